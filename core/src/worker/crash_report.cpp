#include <plexus/worker/crash_report.hpp>

#include <cxxabi.h>
#include <execinfo.h>
#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <sstream>

namespace plexus::worker::crash {

namespace {

constexpr int kSignals[] = {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT};
constexpr int kMaxFrames = 64;
constexpr std::size_t kAltStackBytes = 64 * 1024;

int report_fd = -1;

// What the calling thread is running (TaskScope); read by the handler on that same thread.
thread_local const char* task_key = nullptr;
thread_local std::size_t task_key_size = 0;
thread_local const char* task_name = nullptr;
thread_local std::size_t task_name_size = 0;
thread_local bool has_alt_stack = false;

const char* signal_text(int sig) {
  switch (sig) {
    case SIGSEGV: return "SIGSEGV (segmentation fault)";
    case SIGBUS: return "SIGBUS (bus error)";
    case SIGFPE: return "SIGFPE (arithmetic exception)";
    case SIGILL: return "SIGILL (illegal instruction)";
    case SIGABRT: return "SIGABRT (aborted)";
    default: return "a fatal signal";
  }
}

// write(2) until done or failed: all the handler may use.
void put(const char* s, std::size_t n) {
  while (n > 0) {
    const ssize_t w = ::write(report_fd, s, n);
    if (w <= 0) return;
    s += w;
    n -= static_cast<std::size_t>(w);
  }
}
void put(const char* s) { put(s, std::strlen(s)); }

void on_fatal_signal(int sig) {
  if (report_fd >= 0) {
    put("killed by signal ");
    put(signal_text(sig));
    if (task_key != nullptr) {
      put(" in task ");
      put(task_key, task_key_size);
      put(" (");
      put(task_name, task_name_size);
      put(")");
    }
    put("\nstack trace:\n");
    void* frames[kMaxFrames];
    const int n = ::backtrace(frames, kMaxFrames);
    ::backtrace_symbols_fd(frames, n, report_fd);
  }
  // Die of the same signal, so that whoever waits for this process sees the real cause.
  ::signal(sig, SIG_DFL);
  ::raise(sig);
}

void ensure_alt_stack() {
  if (has_alt_stack) return;
  has_alt_stack = true;
  // Kept for the thread's life (a thread's alternate stack cannot be freed while it may run).
  static thread_local std::unique_ptr<char[]> memory(new char[kAltStackBytes]);
  stack_t ss{};
  ss.ss_sp = memory.get();
  ss.ss_size = kAltStackBytes;
  ::sigaltstack(&ss, nullptr);
}

// "module(_ZN3foo3barEv+0x1c) [0x7f...]" -> "module(foo::bar()+0x1c) [0x7f...]".
std::string demangle_line(const std::string& line) {
  const auto open = line.find('(');
  const auto plus = line.find('+', open == std::string::npos ? 0 : open);
  if (open == std::string::npos || plus == std::string::npos || plus <= open + 1) return line;
  const std::string mangled = line.substr(open + 1, plus - open - 1);
  int status = 0;
  std::unique_ptr<char, void (*)(void*)> name(
      abi::__cxa_demangle(mangled.c_str(), nullptr, nullptr, &status), &std::free);
  if (status != 0 || !name) return line;
  return line.substr(0, open + 1) + name.get() + line.substr(plus);
}

}  // namespace

void install(int fd) {
  report_fd = fd;
  // backtrace() loads libgcc on its first call, which may allocate: not in a signal handler.
  void* warm[1];
  (void)::backtrace(warm, 1);
  ensure_alt_stack();
  struct sigaction sa {};
  sa.sa_handler = &on_fatal_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_ONSTACK | SA_RESETHAND;
  for (const int sig : kSignals) ::sigaction(sig, &sa, nullptr);
}

TaskScope::TaskScope(std::string_view key, std::string_view name) noexcept {
  ensure_alt_stack();
  task_key = key.data();
  task_key_size = key.size();
  task_name = name.data();
  task_name_size = name.size();
}

TaskScope::~TaskScope() {
  task_key = nullptr;
  task_name = nullptr;
}

std::string take_report(const std::string& path) {
  std::ifstream in(path);
  if (!in) return {};
  std::ostringstream text;
  for (std::string line; std::getline(in, line);) text << demangle_line(line) << '\n';
  in.close();
  // Emptied for the next incarnation (which also truncates it when it starts).
  std::ofstream(path, std::ios::trunc).flush();
  std::string out = text.str();
  while (!out.empty() && out.back() == '\n') out.pop_back();
  return out;
}

}  // namespace plexus::worker::crash
