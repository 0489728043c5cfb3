// The plugin SDK: turn ordinary C++ functions into tasks that a Plexus cluster runs by name.
//
//   #include <plexus/sdk.hpp>
//   static int square(int x) { return x * x; }
//   static std::string greet(const std::string& who) { return "hello " + who; }
//   PLEXUS_PLUGIN(mylib, "0.1.0", registry) {
//     registry.add("square", &square);   // task "mylib.square"
//     registry.add("greet", &greet);     // task "mylib.greet"
//   }
//
// Build it with `plexus_add_plugin(mylib SOURCES mylib.cpp)` (CMake, after find_package(Plexus)).
//
// A task is any function pointer or non-generic lambda whose parameter and result types have a
// plexus::codec (see codec.hpp). Exceptions thrown by a task are caught here, inside the plugin,
// and reach the client as a plexus::TaskError carrying the exception's type and message; nothing
// but plain data crosses the shared-library boundary (abi.h).
//
// Registration runs once, the first time a worker asks the plugin for its manifest, never at
// static-initialization time. Tasks may be called from several worker threads at once: a task
// that touches shared state must synchronize it itself.
#pragma once

#include <plexus/abi.h>
#include <plexus/codec.hpp>

#include <cxxabi.h>

#include <cstdlib>
#include <exception>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <typeinfo>
#include <utility>
#include <vector>

#define PLEXUS_SDK_VERSION "0.1.0"

namespace plexus {

namespace detail {

template <class F>
struct fn_traits : fn_traits<decltype(&F::operator())> {};
template <class R, class... A>
struct fn_traits<R (*)(A...)> {
  using result = R;
  using args = std::tuple<std::decay_t<A>...>;
};
template <class R, class... A>
struct fn_traits<R (*)(A...) noexcept> : fn_traits<R (*)(A...)> {};
template <class C, class R, class... A>
struct fn_traits<R (C::*)(A...) const> : fn_traits<R (*)(A...)> {};
template <class C, class R, class... A>
struct fn_traits<R (C::*)(A...) const noexcept> : fn_traits<R (*)(A...)> {};
template <class C, class R, class... A>
struct fn_traits<R (C::*)(A...)> : fn_traits<R (*)(A...)> {};
template <class C, class R, class... A>
struct fn_traits<R (C::*)(A...) noexcept> : fn_traits<R (*)(A...)> {};

inline std::string demangle(const char* name) {
  int status = 0;
  std::unique_ptr<char, void (*)(void*)> out(abi::__cxa_demangle(name, nullptr, nullptr, &status),
                                             std::free);
  return status == 0 && out ? std::string(out.get()) : std::string(name);
}

template <class Tuple, std::size_t... I>
std::string param_names(std::index_sequence<I...>) {
  std::string s;
  ((s += (I ? ", " : "") + codec<std::tuple_element_t<I, Tuple>>::type_name()), ...);
  return s;
}

template <class R>
std::string result_name() {
  if constexpr (std::is_void_v<R>) {
    return "void";
  } else {
    return codec<std::decay_t<R>>::type_name();
  }
}

/// RefSource::resolve over the host's plexus_output::resolve.
inline bool resolve_through_host(void* context, std::string_view key, std::string_view* value) {
  const auto* out = static_cast<const plexus_output*>(context);
  if (!out->resolve) return false;
  const unsigned char* data = nullptr;
  std::size_t size = 0;
  if (out->resolve(out->host, key.data(), key.size(), &data, &size) != 0) return false;
  *value = std::string_view(reinterpret_cast<const char*>(data), size);
  return true;
}

/// Type-erased task held by a Registry; `invoke` is what the manifest points at.
struct TaskBase {
  virtual ~TaskBase() = default;
  virtual int call(const unsigned char* args, std::size_t size, const plexus_output* out) const = 0;
  std::string name;
  std::string signature;
};

template <class F>
struct Task final : TaskBase {
  using traits = fn_traits<F>;
  using Args = typename traits::args;
  using R = typename traits::result;
  static constexpr std::size_t kArity = std::tuple_size_v<Args>;

  explicit Task(F f) : fn(std::move(f)) {}

  int call(const unsigned char* data, std::size_t size, const plexus_output* out) const override {
    std::optional<Args> args;
    try {
      // Futures among the arguments are read in place from the host's values (ABI 2).
      const RefSource refs{const_cast<plexus_output*>(out), &resolve_through_host};
      Reader r(data, size, &refs);
      std::size_t n = r.read_list("an argument list");
      if (n != kArity) {
        throw DecodeError("expects " + std::to_string(kArity) + " argument" +
                          (kArity == 1 ? "" : "s") + ", received " + std::to_string(n));
      }
      args.emplace(decode_args(r, std::make_index_sequence<kArity>{}));
      if (!r.at_end()) throw DecodeError("trailing bytes after the arguments");
    } catch (const std::exception& e) {
      std::string msg = "task '" + name + "' has signature " + signature + ": " + e.what();
      out->set_error(out->host, PLEXUS_STATUS_BAD_ARGUMENTS, "plexus::TypeMismatch", msg.c_str());
      return PLEXUS_STATUS_BAD_ARGUMENTS;
    } catch (...) {
      // A user codec may throw anything; nothing may escape into the worker.
      std::type_info* t = abi::__cxa_current_exception_type();
      std::string msg = "task '" + name + "' has signature " + signature +
                        ": a non-std::exception (" + (t ? demangle(t->name()) : "unknown") +
                        ") was thrown while decoding the arguments";
      out->set_error(out->host, PLEXUS_STATUS_BAD_ARGUMENTS, "plexus::TypeMismatch", msg.c_str());
      return PLEXUS_STATUS_BAD_ARGUMENTS;
    }
    try {
      Writer w;
      if constexpr (std::is_void_v<R>) {
        std::apply(fn, std::move(*args));
        w.null();
      } else {
        codec<std::decay_t<R>>::encode(w, std::apply(fn, std::move(*args)));
      }
      const std::string& b = w.buffer();
      out->set_result(out->host, reinterpret_cast<const unsigned char*>(b.data()), b.size());
      return PLEXUS_STATUS_OK;
    } catch (const std::exception& e) {
      out->set_error(out->host, PLEXUS_STATUS_EXCEPTION, demangle(typeid(e).name()).c_str(),
                     e.what());
    } catch (...) {
      std::type_info* t = abi::__cxa_current_exception_type();
      std::string type = t ? demangle(t->name()) : std::string("unknown");
      out->set_error(out->host, PLEXUS_STATUS_EXCEPTION, type.c_str(),
                     "a non-std::exception was thrown");
    }
    return PLEXUS_STATUS_EXCEPTION;
  }

  template <std::size_t... I>
  static Args decode_args(Reader& r, std::index_sequence<I...>) {
    // Braced initialization evaluates in order: argument 1 is read first.
    return Args{at("argument " + std::to_string(I + 1),
                   [&] { return codec<std::tuple_element_t<I, Args>>::decode(r); })...};
  }

  F fn;
};

inline int invoke_trampoline(const void* context, const unsigned char* args, std::size_t size,
                             const plexus_output* out) {
  return static_cast<const TaskBase*>(context)->call(args, size, out);
}

}  // namespace detail

/// Collects a plugin's tasks. Handed to the PLEXUS_PLUGIN body; not thread-safe, and only used
/// during registration.
class Registry {
 public:
  /// Registers `fn` as task `<plugin>.<name>`. `name` must be non-empty, contain no '.' or '@'
  /// and be unique in the plugin; otherwise registration fails and the worker reports why.
  template <class F>
  Registry& add(std::string_view name, F fn) {
    using Fn = std::conditional_t<std::is_function_v<F>, F*, F>;
    if (name.empty() || name.find_first_of(".@ ") != std::string_view::npos) {
      throw std::invalid_argument("invalid task name '" + std::string(name) +
                                  "': it must be non-empty and contain no '.', '@' or space");
    }
    for (const auto& t : tasks_) {
      if (t->name == name) {
        throw std::invalid_argument("task '" + std::string(name) + "' is registered twice");
      }
    }
    auto task = std::make_unique<detail::Task<Fn>>(Fn(std::move(fn)));
    using T = detail::Task<Fn>;
    task->name = std::string(name);
    task->signature = detail::result_name<typename T::R>() + "(" +
                      detail::param_names<typename T::Args>(std::make_index_sequence<T::kArity>{}) +
                      ")";
    tasks_.push_back(std::move(task));
    return *this;
  }

  const std::vector<std::unique_ptr<detail::TaskBase>>& tasks() const { return tasks_; }

 private:
  std::vector<std::unique_ptr<detail::TaskBase>> tasks_;
};

namespace detail {

/// Owns a plugin's registry and the C manifest that points into it. Built once, on first use.
class PluginHolder {
 public:
  PluginHolder(const char* name, const char* version, void (*reg)(Registry&))
      : name_(name), version_(version) {
    try {
      reg(registry_);
    } catch (const std::exception& e) {
      error_ = std::string("registration of plugin '") + name + "' failed: " + e.what();
    } catch (...) {
      error_ = std::string("registration of plugin '") + name + "' failed: unknown exception";
    }
    if (error_.empty()) {
      for (const auto& t : registry_.tasks()) {
        entries_.push_back({t->name.c_str(), t->signature.c_str(), t.get(), &invoke_trampoline});
      }
    }
    manifest_.abi_version = PLEXUS_SDK_ABI_VERSION;
    manifest_.struct_size = sizeof(plexus_manifest);
    manifest_.plugin_name = name_.c_str();
    manifest_.plugin_version = version_.c_str();
    manifest_.sdk_version = PLEXUS_SDK_VERSION;
    manifest_.error = error_.empty() ? nullptr : error_.c_str();
    manifest_.task_count = entries_.size();
    manifest_.tasks = entries_.data();
  }
  const plexus_manifest* manifest() const { return &manifest_; }

 private:
  std::string name_;
  std::string version_;
  std::string error_;
  Registry registry_;
  std::vector<plexus_task_entry> entries_;
  plexus_manifest manifest_{};
};

}  // namespace detail
}  // namespace plexus

/// Declares a plugin: its name (an identifier, the prefix of its task names), its version string,
/// and the name of the Registry parameter of the registration body that follows.
#define PLEXUS_PLUGIN(NAME, VERSION, REGISTRY)                                          \
  static void plexus_register_plugin_(::plexus::Registry& REGISTRY);                    \
  extern "C" PLEXUS_PLUGIN_EXPORT const plexus_manifest* plexus_plugin_manifest(void) { \
    static const ::plexus::detail::PluginHolder holder(#NAME, VERSION,                  \
                                                       &plexus_register_plugin_);       \
    return holder.manifest();                                                           \
  }                                                                                     \
  static void plexus_register_plugin_(::plexus::Registry& REGISTRY)
