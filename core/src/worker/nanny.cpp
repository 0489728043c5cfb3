#include <plexus/worker/nanny.hpp>

#include <plexus/abi.h>
#include <plexus/common/logging.hpp>
#include <plexus/common/process.hpp>
#include <plexus/config/config.hpp>
#include <plexus/protocol/socket.hpp>
#include <plexus/protocol/wire.hpp>
#include <plexus/worker/crash_report.hpp>
#include <plexus/worker/memory_policy.hpp>

#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <deque>
#include <filesystem>
#include <optional>
#include <stdexcept>

namespace plexus::worker {

namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

// plexus-worker's exit statuses (daemons/worker/main.cpp) that are not deaths.
constexpr int kWorkerRemoved = 3;        // the scheduler removed it (WorkerExit::removed)
constexpr int kWorkerSchedulerLost = 4;  // WorkerExit::scheduler_lost
constexpr int kWorkerRestart = 6;        // WorkerExit::restart: the cluster restarts

// How long a restart waits for the scheduler to confirm the WorkerDied report, so that the new
// incarnation's Hello cannot overtake the report of the old one's death.
constexpr milliseconds kAckWait{2000};

// When the system has no pidfd (Linux < 5.3), the child is polled this often.
constexpr milliseconds kPollChild{20};

std::uint32_t positive_u32(const config::Config& c, std::string_view key, std::int64_t min) {
  const std::int64_t v = c.get_int(key);
  if (v < min || v > std::int64_t{UINT32_MAX}) {
    throw config::ConfigError(std::string(key) + " = " + std::to_string(v) + ": expected " +
                              std::to_string(min) + " to " + std::to_string(UINT32_MAX));
  }
  return static_cast<std::uint32_t>(v);
}

int open_pidfd(pid_t pid) {
#ifdef SYS_pidfd_open
  return static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
#else
  (void)pid;
  return -1;
#endif
}

}  // namespace

NannyOptions nanny_options(const config::Config& c, std::string scheduler_address,
                           std::string worker_name, std::vector<std::string> worker_argv) {
  NannyOptions o;
  o.scheduler_address = std::move(scheduler_address);
  o.worker_name = std::move(worker_name);
  o.worker_argv = std::move(worker_argv);
  o.connect_timeout_ms = positive_u32(c, "worker.connect-timeout-ms", 0);
  o.death_timeout_ms = positive_u32(c, "worker.death-timeout-ms", 1);
  o.max_crashes = positive_u32(c, "nanny.max-crashes", 1);
  o.crash_window_ms = positive_u32(c, "nanny.crash-window-ms", 0);
  o.restart_backoff_ms = positive_u32(c, "nanny.restart-backoff-ms", 0);
  o.stop_timeout_ms = positive_u32(c, "nanny.stop-timeout-ms", 0);
  o.comm = comm::comm_options(c);
  const MemoryPolicy memory = memory_policy(c, positive_u32(c, "worker.nthreads", 0));
  o.memory_limit = memory.limit;
  o.memory_terminate = memory.terminate;
  o.memory_monitor_interval_ms = memory.monitor_interval_ms;
  return o;
}

int exit_code(NannyExit how) {
  switch (how) {
    case NannyExit::stopped:
    case NannyExit::scheduler_shutdown: return 0;
    case NannyExit::scheduler_lost: return kWorkerSchedulerLost;
    case NannyExit::gave_up: return 5;
    case NannyExit::failed: break;
  }
  return 1;
}

std::string death_cause(int status) {
  if (WIFEXITED(status)) return "exited with status " + std::to_string(WEXITSTATUS(status));
  if (!WIFSIGNALED(status)) return "wait status " + std::to_string(status);
  const int sig = WTERMSIG(status);
  const char* abbrev = ::sigabbrev_np(sig);
  std::string out =
      "killed by signal " + (abbrev ? std::string("SIG") + abbrev : std::to_string(sig));
  // The signals a crash raises say what went wrong; SIGKILL and SIGTERM came from someone.
  const char* meaning = nullptr;
  switch (sig) {
    case SIGSEGV: meaning = "segmentation fault"; break;
    case SIGBUS: meaning = "bus error"; break;
    case SIGFPE: meaning = "arithmetic error"; break;
    case SIGILL: meaning = "illegal instruction"; break;
    case SIGABRT: meaning = "aborted"; break;
    case SIGSYS: meaning = "bad system call"; break;
    default: break;
  }
  if (meaning) out += std::string(" (") + meaning + ")";
  if (WCOREDUMP(status)) out += ", core dumped";
  return out;
}

struct Nanny::Impl {
  explicit Impl(NannyOptions o) : options(std::move(o)), log(logger("nanny")) {
    if (options.worker_name.empty()) throw std::invalid_argument("Nanny: no worker name");
    if (options.worker_argv.empty()) throw std::invalid_argument("Nanny: no worker command line");
    if (options.program.empty()) options.program = options.worker_argv[0];
    if (options.max_crashes == 0) options.max_crashes = 1;
  }

  ~Impl() {
    if (child > 0) {
      ::kill(child, SIGKILL);
      int status;
      while (::waitpid(child, &status, 0) < 0 && errno == EINTR) {
      }
    }
    if (pidfd >= 0) ::close(pidfd);
  }

  // ---- the child ----
  void start_child() {
    // Its own process group: a terminal's Ctrl-C reaches the nanny only, which passes it on once.
    child = spawn_process(options.program, options.worker_argv, /*own_process_group=*/true);
    child_pid = child;
    pidfd = open_pidfd(child);
    ++incarnation;
    if (incarnation > 1) {
      log->info("worker restarted name='{}' pid={} (restart {})", options.worker_name, child,
                incarnation - 1);
    }
  }

  // Reaps the child if it has exited; returns its wait status then.
  std::optional<int> reap() {
    if (child <= 0) return std::nullopt;
    int status = 0;
    pid_t r;
    do {
      r = ::waitpid(child, &status, WNOHANG);
    } while (r < 0 && errno == EINTR);
    if (r == 0) return std::nullopt;
    if (r < 0) status = 0;  // ECHILD: someone else reaped it; nothing is known
    if (pidfd >= 0) ::close(pidfd);
    pidfd = -1;
    child = 0;
    child_pid = 0;
    return status;
  }

  // Kills the child if its memory is past the terminate threshold (every monitor interval).
  void check_memory(Clock::time_point now) {
    if (child <= 0 || leaving || memory_cause || !terminate_bytes || now < next_memory_check) {
      return;
    }
    next_memory_check = now + milliseconds(options.memory_monitor_interval_ms);
    const auto rss = process_rss_bytes(child);
    if (!rss || *rss <= *terminate_bytes) return;
    char fraction[16];
    std::snprintf(fraction, sizeof fraction, "%g", *options.memory_terminate);
    memory_cause = "exceeded its memory limit (RSS " + format_bytes(*rss) + " of " +
                   format_bytes(options.memory_limit) + "; worker.memory-terminate = " +
                   fraction + ")";
    log->warn("worker name='{}' pid={} {}: killing it", options.worker_name, child,
              *memory_cause);
    ::kill(child, SIGKILL);
  }

  // Removes what a dead worker left in its local directory (its spilled results).
  void clear_scratch() {
    if (options.scratch_directory.empty()) return;
    std::error_code ec;
    for (const auto& entry : std::filesystem::directory_iterator(options.scratch_directory, ec)) {
      std::error_code rm;
      std::filesystem::remove_all(entry.path(), rm);
    }
  }

  void on_child_exit(int status, Clock::time_point now) {
    clear_scratch();
    // The nanny's own kill for memory is the cause, not the SIGKILL it shows as.
    const std::string cause = memory_cause ? *memory_cause : death_cause(status);
    memory_cause.reset();
    if (WIFSIGNALED(status) && !options.crash_file.empty()) {
      crash_report = crash::take_report(options.crash_file);
      if (!crash_report.empty()) {
        log->error("worker crashed name='{}':\n{}", options.worker_name, crash_report);
      }
    } else {
      crash_report.clear();
    }
    const bool exited = WIFEXITED(status);
    const int code = exited ? WEXITSTATUS(status) : -1;
    if (leaving) {
      if (killed_it) {
        const std::string why = "killed by its nanny: still running " +
                                std::to_string(options.stop_timeout_ms) +
                                " ms after it was asked to stop";
        report_death(why);  // logged when it was killed
      } else {
        log->info("worker stopped name='{}' ({})", options.worker_name, cause);
      }
      return;
    }
    if (exited && code == 0) {
      log->info("worker exited name='{}' ({}): the scheduler shut down or the worker was "
                "stopped; the nanny stops too",
                options.worker_name, cause);
      leave(NannyExit::scheduler_shutdown);
      return;
    }
    if (exited && code == kWorkerSchedulerLost) {
      log->error("worker lost the scheduler at {} name='{}' ({}); the nanny stops too",
                 options.scheduler_address, options.worker_name, cause);
      leave(NannyExit::scheduler_lost);
      return;
    }
    if (!welcomed && exited && code == 1) {
      // Cannot reach the scheduler, refused, or a bad setting: restarting would not help.
      log->error("worker failed to start name='{}' ({}); see its error above",
                 options.worker_name, cause);
      leave(NannyExit::failed);
      return;
    }
    if (exited && code == kWorkerRestart) {
      // Asked for by the scheduler (Client::restart): not a death, so no WorkerDied and no count
      // against max-crashes; the fresh process starts at once.
      log->info("worker exited for a cluster restart name='{}': starting it again",
                options.worker_name);
      start_child();
      return;
    }
    const bool removed = exited && code == kWorkerRemoved;
    if (!removed) report_death(cause);
    deaths.push_back(now);
    while (!deaths.empty() && now - deaths.front() > milliseconds(options.crash_window_ms)) {
      deaths.pop_front();
    }
    const auto n = static_cast<std::uint32_t>(deaths.size());
    if (n >= options.max_crashes) {
      log->error("worker died {} times within {} ms (nanny.max-crashes = {}): giving up "
                 "name='{}' last cause: {}",
                 n, options.crash_window_ms, options.max_crashes, options.worker_name, cause);
      leave(NannyExit::gave_up);
      return;
    }
    const std::uint64_t backoff = std::uint64_t{options.restart_backoff_ms}
                                  << std::min<std::uint32_t>(n - 1, 10);
    restart_at = now + milliseconds(backoff);
    restart_pending = true;
    if (removed) {
      log->warn("worker was removed by the scheduler name='{}' ({}): restarting it in {} ms",
                options.worker_name, cause, backoff);
    } else {
      log->warn("worker died name='{}' pid={}: {}; restarting it in {} ms (death {} within {} "
                "ms; the nanny gives up at {})",
                options.worker_name, last_pid, cause, backoff, n, options.crash_window_ms,
                options.max_crashes);
    }
  }

  // ---- the scheduler ----
  void send_hello() {
    wire::OutBatch b;
    char host[256] = {0};
    ::gethostname(host, sizeof host - 1);
    auto name = b.str(options.worker_name);
    auto h = b.str(host);
    b.add(wire::CreateHello(b.fbb(), wire::Role::nanny, wire::kProtocolVersion,
                            PLEXUS_SDK_ABI_VERSION, name, ::getpid(), 0,
                            flatbuffers::Offset<flatbuffers::String>(), h));
    auto bytes = b.finish();
    sched.send(zmq::buffer(bytes.data(), bytes.size()), zmq::send_flags::none);
  }

  void add_heartbeat() {
    out.add(wire::CreateHeartbeat(out.fbb(), 0, 0, 0));
    ++heartbeats_sent;
  }

  // WorkerDied, with a heartbeat in the same batch: the scheduler handles a batch in order, so
  // the answer to that heartbeat confirms the report (see kAckWait).
  void report_death(const std::string& cause) {
    out.add(wire::CreateWorkerDied(out.fbb(), out.str(options.worker_name), out.str(cause),
                                   out.str(crash_report)));
    add_heartbeat();
    ack_needed = heartbeats_sent;
    flush();
  }

  void say_goodbye(const std::string& reason) {
    out.add(wire::CreateGoodbye(out.fbb(), out.str(reason)));
    flush();
  }

  void flush() {
    if (out.empty()) return;
    auto bytes = out.finish();
    try {
      sched.send(zmq::buffer(bytes.data(), bytes.size()), zmq::send_flags::dontwait);
    } catch (const zmq::error_t& e) {
      log->debug("send to the scheduler failed: {}", e.what());
    }
    out.reset();
  }

  void on_scheduler(std::vector<zmq::message_t>& frames, Clock::time_point now) {
    if (frames.empty()) return;
    const wire::Batch* batch =
        wire::verify_batch(frames[0].data(), frames[0].size(), options.comm.limits);
    if (!batch || !batch->messages()) {
      log->warn("malformed message from the scheduler dropped ({} bytes)", frames[0].size());
      return;
    }
    last_heard = now;
    for (const wire::Envelope* env : *batch->messages()) {
      if (!env) continue;
      switch (env->msg_type()) {
        case wire::Msg::Welcome:
          if (!welcomed) {
            welcomed = true;
            heartbeat_ms = std::max(10u, env->msg_as_Welcome()->heartbeat_ms());
            next_heartbeat = now + milliseconds(heartbeat_ms);
            log->info("connected scheduler={} name='{}'", options.scheduler_address,
                      options.worker_name);
          }
          break;
        case wire::Msg::Refused:
          log->error("the scheduler at {} refused this nanny: {}", options.scheduler_address,
                     wire::view(env->msg_as_Refused()->reason()));
          leave(NannyExit::failed);
          break;
        case wire::Msg::Heartbeat:
          ++heartbeat_replies;
          break;
        case wire::Msg::Shutdown:
          log->info("shutdown requested by the scheduler: {}",
                    wire::view(env->msg_as_Shutdown()->reason()));
          leave(NannyExit::scheduler_shutdown);
          break;
        case wire::Msg::ProtocolError:
          log->warn("the scheduler dropped a message from this nanny: {}",
                    wire::view(env->msg_as_ProtocolError()->reason()));
          break;
        default:
          log->debug("ignored message {} from the scheduler", wire::EnumNameMsg(env->msg_type()));
      }
    }
  }

  // Waits (kAckWait at most) until the scheduler has answered the heartbeat sent with the last
  // WorkerDied. ZeroMQ drops what is still queued when the process exits, and a nanny exits right
  // after reporting the death that made it give up.
  void await_ack(std::vector<zmq::message_t>& frames) {
    const auto deadline = Clock::now() + kAckWait;
    while (heartbeat_replies < ack_needed) {
      const auto now = Clock::now();
      if (now >= deadline) {
        log->warn("the scheduler did not confirm the death of worker name='{}' within {} ms",
                  options.worker_name, kAckWait.count());
        return;
      }
      zmq::pollitem_t items[1] = {{sched.handle(), 0, ZMQ_POLLIN, 0}};
      zmq::poll(items, 1, std::chrono::duration_cast<milliseconds>(deadline - now));
      while (comm::recv_multipart(sched, frames, true)) on_scheduler(frames, Clock::now());
    }
  }

  // ---- leaving ----
  // Decides to end with `how`: a running child is asked to stop (SIGTERM, or the signal stop()
  // was given), and killed after stop_timeout; a pending restart is dropped.
  void leave(NannyExit how) {
    if (leaving) return;
    leaving = how;
    restart_pending = false;
    if (child > 0) {
      const int sig = how == NannyExit::stopped ? stop_signal.load() : SIGTERM;
      ::kill(child, sig);
      kill_at = Clock::now() + milliseconds(options.stop_timeout_ms);
    }
  }

  NannyExit run() {
    if (stop_signal.load() != 0) return NannyExit::stopped;  // a signal came first
    start_child();  // first: the worker's startup is what a LocalCluster waits for
    sched = zmq::socket_t(comm::context(), zmq::socket_type::dealer);
    comm::configure(sched, options.comm.linger_ms, options.comm.max_message_bytes);
    sched.connect(options.scheduler_address);
    send_hello();
    const auto t0 = Clock::now();
    connect_deadline = t0 + milliseconds(options.connect_timeout_ms);
    last_heard = t0;
    log->info("nanny started name='{}' scheduler={} worker_pid={}", options.worker_name,
              options.scheduler_address, child);
    std::vector<zmq::message_t> frames;
    while (true) {
      auto now = Clock::now();
      if (stop_signal.load() != 0 && !leaving) {
        log->info("stopping the worker name='{}' pid={} (signal {}; SIGKILL after {} ms)",
                  options.worker_name, child, stop_signal.load(), options.stop_timeout_ms);
        leave(NannyExit::stopped);
      }
      if (leaving && child <= 0) break;

      // Sleep until the next thing to do.
      auto until = now + milliseconds(heartbeat_ms);
      if (welcomed) until = std::min(until, next_heartbeat);
      if (!welcomed) until = std::min(until, connect_deadline);
      if (restart_pending) {
        // After the backoff, the restart also waits for the death report's confirmation, which
        // wakes the poll when it arrives.
        const auto when = heartbeat_replies >= ack_needed ? restart_at : restart_at + kAckWait;
        until = std::min(until, std::max(when, now));
      }
      if (leaving && child > 0) until = std::min(until, kill_at);
      if (child > 0 && pidfd < 0) until = std::min(until, now + kPollChild);
      if (child > 0 && terminate_bytes && !leaving) until = std::min(until, next_memory_check);
      auto wait = std::chrono::duration_cast<milliseconds>(until - now);
      zmq::pollitem_t items[3] = {{sched.handle(), 0, ZMQ_POLLIN, 0},
                                  {nullptr, wake.fd(), ZMQ_POLLIN, 0},
                                  {nullptr, pidfd, ZMQ_POLLIN, 0}};
      zmq::poll(items, child > 0 && pidfd >= 0 ? 3 : 2,
                std::max(wait, milliseconds(0)) + milliseconds(1));
      if (items[1].revents & ZMQ_POLLIN) wake.drain();
      now = Clock::now();
      for (int i = 0; i < 64; ++i) {
        if (!comm::recv_multipart(sched, frames, true)) break;
        on_scheduler(frames, now);
      }
      check_memory(now);
      const pid_t pid_before = child;
      if (auto status = reap()) {
        last_pid = pid_before;
        on_child_exit(*status, now);
      }

      if (leaving) {
        if (child > 0 && !killed_it && now >= kill_at) {
          log->warn("worker name='{}' pid={} still running {} ms after it was asked to stop: "
                    "killing it",
                    options.worker_name, child, options.stop_timeout_ms);
          ::kill(child, SIGKILL);
          killed_it = true;
        }
      } else {
        if (!welcomed && now >= connect_deadline) {
          log->error("could not reach the scheduler at {} within {} ms: stopping the worker",
                     options.scheduler_address, options.connect_timeout_ms);
          leave(NannyExit::failed);
        } else if (welcomed && now - last_heard > milliseconds(options.death_timeout_ms)) {
          log->error("no message from the scheduler at {} for {} ms: stopping the worker",
                     options.scheduler_address, options.death_timeout_ms);
          leave(NannyExit::scheduler_lost);
        } else if (restart_pending && now >= restart_at &&
                   (heartbeat_replies >= ack_needed || now >= restart_at + kAckWait)) {
          restart_pending = false;
          start_child();
        }
      }
      if (welcomed && now >= next_heartbeat) {
        add_heartbeat();
        next_heartbeat = now + milliseconds(heartbeat_ms);
      }
      flush();
    }

    const NannyExit how = *leaving;
    if (how != NannyExit::scheduler_lost && how != NannyExit::failed) await_ack(frames);
    if (welcomed && (how == NannyExit::stopped || how == NannyExit::gave_up)) {
      say_goodbye(how == NannyExit::stopped ? "nanny stopping" : "nanny gave up");
    } else {
      sched.set(zmq::sockopt::linger, 0);  // the scheduler is gone or never answered
    }
    sched.close();
    log->info("nanny stopped name='{}'", options.worker_name);
    return how;
  }

  NannyOptions options;
  std::shared_ptr<spdlog::logger> log;
  comm::Wakeup wake;
  std::atomic<int> stop_signal{0};  // set once by stop(), from any thread
  std::atomic<pid_t> child_pid{0};  // mirrors `child` for worker_pid()

  // Owned by the thread running run().
  zmq::socket_t sched;  // opened by run() once the child is started
  wire::OutBatch out;
  pid_t child = 0;     // the running child, 0 if none
  pid_t last_pid = 0;  // the child that exited last (logs)
  int pidfd = -1;      // readable once `child` exits; -1 without pidfd support
  std::uint32_t incarnation = 0;
  bool welcomed = false;
  std::uint32_t heartbeat_ms = 500;
  Clock::time_point connect_deadline, last_heard, next_heartbeat;
  std::uint64_t heartbeats_sent = 0;
  std::uint64_t heartbeat_replies = 0;
  std::uint64_t ack_needed = 0;  // replies that confirm the last WorkerDied
  std::deque<Clock::time_point> deaths;  // within crash_window
  bool restart_pending = false;
  Clock::time_point restart_at;
  std::optional<NannyExit> leaving;  // set once the nanny has decided to end
  Clock::time_point kill_at;         // when a child asked to stop gets SIGKILL
  bool killed_it = false;
  std::string crash_report;  // of the child that died last, if it wrote one
  // Memory: the RSS past which the child is killed (nothing: never), when to measure next, and
  // why the nanny killed the running child, if it did.
  std::optional<std::uint64_t> terminate_bytes =
      options.memory_limit > 0 && options.memory_terminate
          ? std::optional<std::uint64_t>(static_cast<std::uint64_t>(
                static_cast<double>(options.memory_limit) * *options.memory_terminate))
          : std::nullopt;
  Clock::time_point next_memory_check{};
  std::optional<std::string> memory_cause;
};

Nanny::Nanny(NannyOptions options) : impl_(std::make_unique<Impl>(std::move(options))) {}
Nanny::~Nanny() {
  if (!impl_->options.crash_file.empty()) {
    std::error_code ec;
    std::filesystem::remove(impl_->options.crash_file, ec);
  }
}
NannyExit Nanny::run() { return impl_->run(); }
void Nanny::stop(int signal) {
  int expected = 0;
  if (impl_->stop_signal.compare_exchange_strong(expected, signal == 0 ? SIGTERM : signal)) {
    impl_->wake.notify();
  }
}
pid_t Nanny::worker_pid() const { return impl_->child_pid.load(); }

}  // namespace plexus::worker
