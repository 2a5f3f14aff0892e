// Validation of TLS settings with OpenSSL itself, so that `switchyard check` refuses exactly what
// the listener would fail to load: unreadable or mismatched certificate/key files, cipher lists
// and groups OpenSSL rejects. Pure functions; any thread.
#pragma once

#include <string>
#include <vector>

namespace switchyard::tls {

// Empty if `cert_file` holds a PEM certificate (optionally followed by its chain) and `key_file`
// the matching private key; otherwise why not, naming the file.
std::string check_certificate_pair(const std::string& cert_file, const std::string& key_file);

// Empty if OpenSSL accepts the value; otherwise its complaint.
std::string check_cipher_list(const std::string& ciphers);     // TLS 1.2
std::string check_ciphersuites(const std::string& suites);     // TLS 1.3
std::string check_groups(const std::string& groups);
std::string check_ca_file(const std::string& file);

// DNS names a certificate is valid for (subjectAltName DNS entries, else the subject CN),
// lower-cased; "*.example.com" for wildcards. Empty on error (and `error` set).
std::vector<std::string> certificate_names(const std::string& cert_file, std::string& error);

// The last OpenSSL error as text (and clears the queue).
std::string last_error();

}  // namespace switchyard::tls
