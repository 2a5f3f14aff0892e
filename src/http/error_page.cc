#include "http/error_page.h"

#include <fmt/format.h>

#include <iterator>

namespace switchyard::http {

std::string_view reason_phrase(int status) {
  switch (status) {
    case 100:
      return "Continue";
    case 200:
      return "OK";
    case 201:
      return "Created";
    case 204:
      return "No Content";
    case 301:
      return "Moved Permanently";
    case 302:
      return "Found";
    case 303:
      return "See Other";
    case 304:
      return "Not Modified";
    case 307:
      return "Temporary Redirect";
    case 308:
      return "Permanent Redirect";
    case 400:
      return "Bad Request";
    case 401:
      return "Unauthorized";
    case 403:
      return "Forbidden";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 408:
      return "Request Timeout";
    case 413:
      return "Content Too Large";
    case 414:
      return "URI Too Long";
    case 421:
      return "Misdirected Request";
    case 429:
      return "Too Many Requests";
    case 431:
      return "Request Header Fields Too Large";
    case 500:
      return "Internal Server Error";
    case 501:
      return "Not Implemented";
    case 502:
      return "Bad Gateway";
    case 503:
      return "Service Unavailable";
    case 504:
      return "Gateway Timeout";
    default:
      return "Unknown";
  }
}

void write_error_response(int status, std::string& out) {
  std::string_view reason = reason_phrase(status);
  // Body: "503 Service Unavailable\n"
  std::size_t body_len = 3 + 1 + reason.size() + 1;
  fmt::format_to(std::back_inserter(out),
                 "HTTP/1.1 {} {}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n"
                 "Cache-Control: no-cache\r\nConnection: close\r\n\r\n{} {}\n",
                 status, reason, body_len, status, reason);
}

void write_respond(const config::Respond& respond, bool keep_alive, bool head, std::string& out) {
  fmt::format_to(std::back_inserter(out), "HTTP/1.1 {} {}\r\n", respond.status,
                 reason_phrase(respond.status));
  for (const config::Header& h : respond.headers) {
    out.append(h.name).append(": ").append(h.value).append("\r\n");
  }
  fmt::format_to(std::back_inserter(out), "Content-Length: {}\r\n", respond.body.size());
  if (!keep_alive) out.append("Connection: close\r\n");
  out.append("\r\n");
  if (!head) out.append(respond.body);
}

}  // namespace switchyard::http

namespace switchyard::http {

void write_redirect(int status, std::string_view location, bool keep_alive, std::string& out) {
  fmt::format_to(std::back_inserter(out), "HTTP/1.1 {} {}\r\nLocation: {}\r\nContent-Length: 0\r\n",
                 status, reason_phrase(status), location);
  if (!keep_alive) out.append("Connection: close\r\n");
  out.append("\r\n");
}

}  // namespace switchyard::http
