#include "proxy/access_log.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <ctime>

namespace switchyard::proxy {
namespace {

// Appends `s` as JSON string content (quotes excluded) to [out, end); returns the new end.
char* json_escape(char* out, char* end, std::string_view s) {
  for (char c : s) {
    if (end - out < 7) break;
    auto u = static_cast<unsigned char>(c);
    if (c == '"' || c == '\\') {
      *out++ = '\\';
      *out++ = c;
    } else if (u < 0x20 || u == 0x7f) {
      out = fmt::format_to(out, "\\u{:04x}", u);
    } else {
      *out++ = c;
    }
  }
  return out;
}

template <typename... Args>
char* put(char* out, char* end, fmt::format_string<Args...> f, Args&&... args) {
  auto r =
      fmt::format_to_n(out, static_cast<std::size_t>(end - out), f, std::forward<Args>(args)...);
  return r.out;
}

}  // namespace

AccessLogQueue::AccessLogQueue(std::size_t capacity)
    : data_(std::make_unique<char[]>(capacity)), capacity_(capacity) {}

bool AccessLogQueue::push(const AccessRecord& r, config::AccessLog::Format format) {
  char line[4096];
  char* end = line + sizeof(line) - 2;  // room for "\n"
  char* p = line;
  std::time_t now = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&now, &tm);
  if (format == config::AccessLog::Format::kJson) {
    p = put(p, end, "{{\"time\":\"{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z\",\"listener\":\"",
            tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
    p = json_escape(p, end, r.listener);
    p = put(p, end, "\",\"client\":\"{}\",\"method\":\"", r.client);
    p = json_escape(p, end, r.method);
    p = put(p, end, "\",\"path\":\"");
    p = json_escape(p, end, r.target);
    p = put(p, end,
            "\",\"status\":{},\"bytes_in\":{},\"bytes_out\":{},\"duration_ms\":{:.3f},"
            "\"upstream\":\"{}\"}}",
            r.status, r.bytes_in, r.bytes_out, r.duration_ms, r.upstream);
  } else {
    // Common log format, plus the upstream and duration at the end.
    static constexpr const char* kMonths[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                              "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    std::string_view client = r.client.substr(0, r.client.rfind(':'));
    p = put(p, end, "{} - - [{:02}/{}/{:04}:{:02}:{:02}:{:02} +0000] \"", client, tm.tm_mday,
            kMonths[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
    p = json_escape(p, end, r.method);
    p = put(p, end, " ");
    p = json_escape(p, end, r.target);
    p = put(p, end, " HTTP/1.1\" {} {} {} {:.3f}", r.status, r.bytes_out, r.upstream,
            r.duration_ms);
  }
  *p++ = '\n';
  return push_line({line, static_cast<std::size_t>(p - line)});
}

bool AccessLogQueue::push_line(std::string_view line) {
  std::uint64_t head = head_.load(std::memory_order_relaxed);
  std::uint64_t tail = tail_.load(std::memory_order_acquire);
  if (capacity_ - (head - tail) < line.size()) {
    dropped_.fetch_add(1, std::memory_order_relaxed);
    return false;
  }
  for (std::size_t i = 0; i < line.size(); ++i) data_[(head + i) % capacity_] = line[i];
  head_.store(head + line.size(), std::memory_order_release);
  return true;
}

void AccessLogQueue::drain_to(int fd) {
  std::uint64_t tail = tail_.load(std::memory_order_relaxed);
  std::uint64_t head = head_.load(std::memory_order_acquire);
  while (tail < head) {
    std::size_t start = tail % capacity_;
    std::size_t n = std::min<std::uint64_t>(head - tail, capacity_ - start);
    ssize_t w = ::write(fd, data_.get() + start, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) break;  // output is gone; the lines are dropped rather than blocking workers
    tail += static_cast<std::uint64_t>(w);
  }
  tail_.store(head, std::memory_order_release);
}

std::string AccessLogWriter::open(const config::AccessLog& cfg) {
  if (!cfg.enabled) return {};
  if (cfg.path == "-") {
    fd_ = STDOUT_FILENO;
    return {};
  }
  fd_ = ::open(cfg.path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd_ < 0) return fmt::format("cannot open access log {}: {}", cfg.path, std::strerror(errno));
  own_fd_ = true;
  path_ = cfg.path;
  return {};
}

void AccessLogWriter::reopen_now() {
  if (!own_fd_) return;
  int fd = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0) {
    // Keep writing to the old file rather than losing lines.
    spdlog::error("cannot reopen access log {}: {}", path_, std::strerror(errno));
    return;
  }
  ::close(fd_);
  fd_ = fd;
  spdlog::info("access log {} reopened", path_);
}

void AccessLogWriter::start(std::vector<AccessLogQueue*> queues) {
  if (fd_ < 0) return;
  queues_ = std::move(queues);
  thread_ = std::thread([this] {
    while (!stop_.load(std::memory_order_acquire)) {
      if (reopen_.exchange(false, std::memory_order_acq_rel)) {
        for (AccessLogQueue* q : queues_) q->drain_to(fd_);  // lines so far: the old file
        reopen_now();
      }
      for (AccessLogQueue* q : queues_) q->drain_to(fd_);
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    for (AccessLogQueue* q : queues_) q->drain_to(fd_);
  });
}

void AccessLogWriter::stop() {
  stop_.store(true, std::memory_order_release);
  if (thread_.joinable()) thread_.join();
}

AccessLogWriter::~AccessLogWriter() {
  stop();
  if (own_fd_) ::close(fd_);
}

}  // namespace switchyard::proxy
