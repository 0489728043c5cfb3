// plexus: the command line. Submits tasks by name; arguments and results are JSON.
//
//   plexus submit --scheduler tcp://127.0.0.1:8786 math.inc 10        # prints 11
//   printf '[1]\n[2]\n' | plexus map --scheduler-file sched.txt math.inc
#include "daemon.hpp"

#include <plexus/client.hpp>
#include <plexus/protocol/socket.hpp>
#include <plexus/common/json_value.hpp>

#include <unistd.h>

#include <chrono>
#include <iostream>
#include <string>
#include <vector>

namespace {

struct Target {
  std::string scheduler;
  std::string scheduler_file;
  double timeout_s = 0;
  bool impure = false;
  std::uint32_t retries = 0;
};

plexus::Client connect(const Target& t, const plexus::config::Config& config) {
  if (!t.scheduler.empty()) return plexus::Client(t.scheduler);
  if (!t.scheduler_file.empty()) return plexus::Client::from_scheduler_file(t.scheduler_file);
  return plexus::Client(config.get_string("scheduler.address"));
}

plexus::detail::Timeout timeout_of(const Target& t) {
  if (t.timeout_s <= 0) return std::nullopt;
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
      std::chrono::duration<double>(t.timeout_s));
}

plexus::SubmitOptions options_of(const Target& t) {
  plexus::SubmitOptions o;
  o.pure = !t.impure;
  o.retries = t.retries;
  return o;
}

void add_target_flags(CLI::App* cmd, Target& t) {
  auto* a = cmd->add_option("--scheduler", t.scheduler, "scheduler address");
  auto* f = cmd->add_option("--scheduler-file", t.scheduler_file,
                            "read the scheduler address from this file");
  a->excludes(f);
  cmd->add_option("--timeout", t.timeout_s, "seconds to wait for each result (default: forever)");
  cmd->add_flag("--no-pure", t.impure, "give each task a random key (always recompute)");
  cmd->add_option("--retries", t.retries, "rerun a task that throws up to this many times");
}

std::string result_json(const plexus::detail::FutureRef& f, plexus::detail::Timeout timeout) {
  return plexus::value_to_json(plexus::detail::future_value(*f, timeout));
}

int run_submit(const Target& t, const std::string& task, const std::vector<std::string>& args,
               const plexus::config::Config& config) {
  std::string encoded = plexus::json_args_to_value(args.data(), args.size());
  auto client = connect(t, config);
  auto f = client.submit_encoded(options_of(t), plexus::EncodedCall{task, encoded, {}});
  std::cout << result_json(f, timeout_of(t)) << std::endl;
  return 0;
}

int run_map(const Target& t, const std::string& task, const plexus::config::Config& config) {
  // Lines are submitted in slices as they are read, so the cluster starts while stdin streams in
  // and only the futures are held, not every encoded call.
  constexpr std::size_t kSlice = 1024;
  auto client = connect(t, config);
  const plexus::SubmitOptions options = options_of(t);
  std::vector<plexus::detail::FutureRef> futures;
  std::vector<plexus::EncodedCall> calls;
  auto submit_slice = [&] {
    for (auto& f : client.submit_encoded_many(options, std::move(calls))) {
      futures.push_back(std::move(f));
    }
    calls.clear();
  };
  std::string line;
  std::size_t lineno = 0;
  while (std::getline(std::cin, line)) {
    ++lineno;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    std::string encoded;
    try {
      encoded = plexus::json_to_value(line);
    } catch (const std::exception& e) {
      std::cerr << "plexus map: stdin line " << lineno << ": " << e.what() << "\n";
      return 2;
    }
    if (static_cast<plexus::Tag>(encoded[0]) != plexus::Tag::list) {
      std::cerr << "plexus map: stdin line " << lineno
                << ": expected a JSON array of arguments, e.g. [1, \"a\"]\n";
      return 2;
    }
    calls.push_back({task, std::move(encoded), {}});
    if (calls.size() == kSlice) submit_slice();
  }
  if (!calls.empty()) submit_slice();
  bool progress = ::isatty(STDERR_FILENO) != 0;
  auto last = std::chrono::steady_clock::now();
  for (std::size_t i = 0; i < futures.size(); ++i) {
    std::cout << result_json(futures[i], timeout_of(t)) << "\n";
    if (progress) {
      auto now = std::chrono::steady_clock::now();
      if (now - last > std::chrono::milliseconds(100) || i + 1 == futures.size()) {
        last = now;
        std::size_t width = 40, filled = (i + 1) * width / futures.size();
        std::cerr << "\r[" << std::string(filled, '#') << std::string(width - filled, ' ') << "] "
                  << (i + 1) << "/" << futures.size() << std::flush;
      }
    }
  }
  if (progress) std::cerr << "\n";
  std::cout.flush();
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  // Closed last, so the client's Goodbye reaches the scheduler before the process exits (comm
  // linger-ms is 1,000 by default).
  plexus::comm::ContextCloser closer(std::chrono::milliseconds(1100));
  CLI::App app{"Plexus command line: submit tasks to a cluster by name"};
  plexus::daemon::CommonFlags flags;
  flags.add_to(app);
  app.require_subcommand(1);

  Target submit_target;
  std::string submit_task;
  std::vector<std::string> submit_args;
  auto* submit = app.add_subcommand("submit", "run one task; prints its result as JSON");
  add_target_flags(submit, submit_target);
  submit->add_option("task", submit_task, "task name, e.g. math.inc")->required();
  submit->add_option("args", submit_args, "arguments, each a JSON value (quote strings: '\"a\"')");

  Target map_target;
  std::string map_task;
  auto* map = app.add_subcommand(
      "map", "run a task once per stdin line (a JSON array of arguments); prints one JSON "
             "result per line, in input order");
  add_target_flags(map, map_target);
  map->add_option("task", map_task, "task name, e.g. math.inc")->required();

  CLI11_PARSE(app, argc, argv);
  try {
    auto config = flags.load();
    plexus::set_log_level(flags.log_level.empty() ? "warning" : flags.log_level);
    if (submit->parsed()) return run_submit(submit_target, submit_task, submit_args, config);
    return run_map(map_target, map_task, config);
  } catch (const plexus::TaskError& e) {
    std::cerr << "plexus: task failed: " << e.what() << "\n";
    return 1;
  } catch (const std::exception& e) {
    std::cerr << "plexus: " << e.what() << "\n";
    return 1;
  }
}
