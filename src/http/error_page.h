// Responses the proxy writes itself: error pages and configured `respond` answers.
#pragma once

#include <string>
#include <string_view>

#include "config/config.h"

namespace switchyard::http {

// "Service Unavailable" for 503; "Unknown" for codes without a standard reason phrase.
std::string_view reason_phrase(int status);

// A complete error response: small text/plain body naming the status, Connection: close.
void write_error_response(int status, std::string& out);

// A redirect to `location` with an empty body. `keep_alive` false adds Connection: close.
void write_redirect(int status, std::string_view location, bool keep_alive, std::string& out);

// A configured fixed response. `keep_alive` false adds Connection: close; `head` omits the body.
void write_respond(const config::Respond& respond, bool keep_alive, bool head, std::string& out);

}  // namespace switchyard::http
