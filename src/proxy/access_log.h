// The access log: one line per request, formatted by the worker into its own single-producer
// ring and written to the file by a separate thread, so a slow disk or a blocked stdout never
// stalls a worker. When a worker's ring is full the line is dropped and counted, never waited for.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "config/config.h"

namespace switchyard::proxy {

struct AccessRecord {
  std::string_view listener;
  std::string_view client;  // "ip:port"
  std::string_view method;
  std::string_view target;
  int status = 0;
  std::uint64_t bytes_in = 0;   // request bytes received from the client (head + body)
  std::uint64_t bytes_out = 0;  // response bytes sent to the client
  double duration_ms = 0;
  std::string_view upstream;  // server address, or "-"
};

// Single-producer (one worker) single-consumer (the writer thread) byte ring of whole lines.
class AccessLogQueue {
 public:
  explicit AccessLogQueue(std::size_t capacity = 1 << 20);

  // Worker thread: formats and enqueues one line; false (and counted) if the ring is full.
  bool push(const AccessRecord& record, config::AccessLog::Format format);

  // Writer thread: writes everything queued to `fd`.
  void drain_to(int fd);

  std::uint64_t dropped() const { return dropped_.load(std::memory_order_relaxed); }

 private:
  bool push_line(std::string_view line);

  std::unique_ptr<char[]> data_;
  std::size_t capacity_;
  std::atomic<std::uint64_t> head_{0};  // written by the producer
  std::atomic<std::uint64_t> tail_{0};  // written by the consumer
  std::atomic<std::uint64_t> dropped_{0};
};

// Owns the output file and the thread that drains every worker's queue every few milliseconds.
class AccessLogWriter {
 public:
  // Opens the configured path ("-" = stdout). Returns an error message, empty on success.
  std::string open(const config::AccessLog& cfg);
  void start(std::vector<AccessLogQueue*> queues);
  // Any thread (SIGUSR1, for log rotation): the writer thread closes the file and opens the
  // configured path again before its next write. No effect on standard output.
  void reopen() { reopen_.store(true, std::memory_order_release); }
  // Drains what is left and joins the thread.
  void stop();
  ~AccessLogWriter();

 private:
  int fd_ = -1;
  bool own_fd_ = false;
  std::string path_;
  std::atomic<bool> reopen_{false};
  void reopen_now();
  std::vector<AccessLogQueue*> queues_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

}  // namespace switchyard::proxy
