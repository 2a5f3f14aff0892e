#include "http/message_parser.h"

#include <cstring>

namespace switchyard::http {
namespace {

MessageParser& self(llhttp_t* p) {
  return *static_cast<MessageParser*>(p->data);
}

}  // namespace

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    unsigned char x = a[i], y = b[i];
    if (x >= 'A' && x <= 'Z') x += 32;
    if (y >= 'A' && y <= 'Z') y += 32;
    if (x != y) return false;
  }
  return true;
}

bool list_contains_token(std::string_view list, std::string_view token) {
  while (!list.empty()) {
    std::size_t comma = list.find(',');
    std::string_view item = list.substr(0, comma);
    while (!item.empty() && (item.front() == ' ' || item.front() == '\t')) item.remove_prefix(1);
    while (!item.empty() && (item.back() == ' ' || item.back() == '\t')) item.remove_suffix(1);
    if (iequals(item, token)) return true;
    if (comma == std::string_view::npos) break;
    list.remove_prefix(comma + 1);
  }
  return false;
}

MessageParser::MessageParser(Kind kind, std::uint32_t max_header_count)
    : kind_(kind), max_header_count_(max_header_count) {
  llhttp_settings_init(&settings_);
  settings_.on_message_begin = &MessageParser::on_message_begin;
  settings_.on_method = &MessageParser::on_method;
  settings_.on_url = &MessageParser::on_url;
  settings_.on_status = &MessageParser::on_status;
  settings_.on_header_field = &MessageParser::on_header_field;
  settings_.on_header_value = &MessageParser::on_header_value;
  settings_.on_headers_complete = &MessageParser::on_headers_complete;
  settings_.on_body = &MessageParser::on_body;
  settings_.on_message_complete = &MessageParser::on_message_complete;
  llhttp_init(&parser_, kind == Kind::kRequest ? HTTP_REQUEST : HTTP_RESPONSE, &settings_);
  parser_.data = this;
  // Sized once so that parsing never allocates in steady state.
  head_.headers.reserve(max_header_count_);
}

void MessageParser::begin_head(const char* base) {
  base_ = base;
}

void MessageParser::reset(const char* base) {
  llhttp_reset(&parser_);
  base_ = base;
  in_head_ = true;
}

MessageParser::Status MessageParser::parse(const char* data, std::size_t len,
                                           std::size_t& consumed) {
  pause_ = Pause::kNone;
  llhttp_errno_t err = llhttp_execute(&parser_, data, len);
  switch (err) {
    case HPE_OK:
      consumed = len;
      return Status::kNeedMore;
    case HPE_PAUSED: {
      consumed = static_cast<std::size_t>(llhttp_get_error_pos(&parser_) - data);
      llhttp_resume(&parser_);
      return pause_ == Pause::kHead ? Status::kHeadComplete : Status::kMessageComplete;
    }
    case HPE_PAUSED_UPGRADE:
      // We strip Upgrade before forwarding, so the message simply ends here.
      consumed = static_cast<std::size_t>(llhttp_get_error_pos(&parser_) - data);
      llhttp_resume_after_upgrade(&parser_);
      return Status::kMessageComplete;
    default:
      consumed = 0;
      return Status::kError;
  }
}

bool MessageParser::finish_at_eof() {
  if (in_head_) return false;
  // Our on_message_complete pauses, which llhttp_finish reports as HPE_PAUSED: that is success.
  llhttp_errno_t err = llhttp_finish(&parser_);
  return err == HPE_OK || err == HPE_PAUSED;
}

std::string_view MessageParser::error_reason() const {
  if (too_many_headers_) return "too many header fields";
  if (bad_field_name_) return "whitespace in a header field name";
  const char* reason = llhttp_get_error_reason(&parser_);
  return reason ? std::string_view(reason)
                : std::string_view(llhttp_errno_name(llhttp_get_errno(&parser_)));
}

void MessageParser::extend(Span& span, const char* at, std::size_t len) {
  auto offset = static_cast<std::uint32_t>(at - base_);
  if (span.length == 0) span.offset = offset;
  // llhttp may report one token in several pieces when input arrives in several reads; the pieces
  // are contiguous in our buffer, so extending the span is enough.
  span.length = offset + static_cast<std::uint32_t>(len) - span.offset;
}

int MessageParser::on_message_begin(llhttp_t* p) {
  MessageParser& m = self(p);
  Head& h = m.head_;
  h.method = h.target = h.reason = Span{};
  h.status = 0;
  h.headers.clear();
  h.chunked = h.has_content_length = h.keep_alive = h.body_until_eof = h.no_body = false;
  h.content_length = 0;
  m.last_ = Last::kNone;
  m.in_head_ = true;
  m.too_many_headers_ = false;
  m.bad_field_name_ = false;
  m.body_bytes_ = 0;
  return 0;
}

int MessageParser::on_method(llhttp_t* p, const char* at, std::size_t len) {
  self(p).extend(self(p).head_.method, at, len);
  return 0;
}

int MessageParser::on_url(llhttp_t* p, const char* at, std::size_t len) {
  self(p).extend(self(p).head_.target, at, len);
  return 0;
}

int MessageParser::on_status(llhttp_t* p, const char* at, std::size_t len) {
  self(p).extend(self(p).head_.reason, at, len);
  return 0;
}

int MessageParser::on_header_field(llhttp_t* p, const char* at, std::size_t len) {
  MessageParser& m = self(p);
  if (m.last_ != Last::kField) {
    if (m.head_.headers.size() >= m.max_header_count_) {
      m.too_many_headers_ = true;
      return -1;
    }
    m.head_.headers.emplace_back();
  }
  m.last_ = Last::kField;
  m.extend(m.head_.headers.back().name, at, len);
  return 0;
}

int MessageParser::on_header_value(llhttp_t* p, const char* at, std::size_t len) {
  MessageParser& m = self(p);
  m.last_ = Last::kValue;
  m.extend(m.head_.headers.back().value, at, len);
  return 0;
}

int MessageParser::on_headers_complete(llhttp_t* p) {
  MessageParser& m = self(p);
  Head& h = m.head_;
  for (HeaderSpan& f : h.headers) {
    // llhttp 8 accepts "Name : value"; RFC 9112 §5.1 requires a 400 (a classic smuggling vector).
    for (char c : f.name.in(m.base_)) {
      if (c == ' ' || c == '\t') {
        m.bad_field_name_ = true;
        return -1;
      }
    }
    // Trailing whitespace is not part of a field value (RFC 9110 §5.5); llhttp keeps it.
    std::string_view v = f.value.in(m.base_);
    while (!v.empty() && (v.back() == ' ' || v.back() == '\t')) v.remove_suffix(1);
    f.value.length = static_cast<std::uint32_t>(v.size());
  }
  h.version_major = p->http_major;
  h.version_minor = p->http_minor;
  h.status = p->status_code;
  h.chunked = (p->flags & F_CHUNKED) != 0;
  h.has_content_length = (p->flags & F_CONTENT_LENGTH) != 0;
  h.content_length = h.has_content_length ? p->content_length : 0;
  if (m.kind_ == Kind::kResponse) {
    int s = h.status;
    if (m.request_was_head_ || s / 100 == 1 || s == 204 || s == 304) {
      // llhttp would otherwise wait for a body these responses never carry; resuming after the
      // pause keeps this flag, so this is how we say "no body" and still stop here.
      p->flags |= F_SKIPBODY;
      h.no_body = true;
    } else {
      h.body_until_eof = !h.chunked && !h.has_content_length;
    }
  } else {
    h.no_body = !h.chunked && h.content_length == 0;
    // We never tunnel (CONNECT is refused, Upgrade is stripped), so a request's body is always
    // framed by its headers. Left set, llhttp would ignore a CONNECT's Content-Length (desyncing
    // the upstream connection) and stop after an Upgrade request.
    p->upgrade = 0;
  }
  h.keep_alive = llhttp_should_keep_alive(p) != 0;
  m.in_head_ = false;
  m.pause_ = Pause::kHead;
  return HPE_PAUSED;
}

int MessageParser::on_body(llhttp_t* p, const char* at, std::size_t len) {
  MessageParser& m = self(p);
  m.body_bytes_ += len;
  if (m.body_sink_) m.body_sink_(m.body_sink_ctx_, at, len);
  return 0;
}

int MessageParser::on_message_complete(llhttp_t* p) {
  self(p).pause_ = Pause::kMessage;
  return HPE_PAUSED;
}

}  // namespace switchyard::http
