/* The plugin ABI: the only things that cross the boundary between a worker and a plugin (.so).
 *
 * Plain C data and function pointers, nothing else: no C++ types, no exceptions, no allocation
 * handed across. A plugin exports one symbol, `plexus_plugin_manifest`, that returns a pointer to a
 * manifest valid for as long as the library stays loaded. Bump PLEXUS_SDK_ABI_VERSION whenever a
 * struct below or the value encoding (codec.hpp) changes incompatibly; a worker refuses plugins
 * built with another ABI and names both versions. */
#ifndef PLEXUS_ABI_H
#define PLEXUS_ABI_H

#include <stddef.h>
#include <stdint.h>

#define PLEXUS_SDK_ABI_VERSION 2u
#define PLEXUS_MANIFEST_SYMBOL "plexus_plugin_manifest"

#if defined(_WIN32)
#define PLEXUS_PLUGIN_EXPORT __declspec(dllexport)
#else
#define PLEXUS_PLUGIN_EXPORT __attribute__((visibility("default")))
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* Outcome of one task call. */
enum plexus_status {
  PLEXUS_STATUS_OK = 0,            /* result written with set_result */
  PLEXUS_STATUS_EXCEPTION = 1,     /* the task threw; type and message written with set_error */
  PLEXUS_STATUS_BAD_ARGUMENTS = 2  /* the arguments do not match the signature */
};

/* Callbacks the host hands to a task call. `host` is opaque to the plugin. Both copy what they are
 * given before returning; each is called at most once per call. */
typedef struct plexus_output {
  void* host;
  void (*set_result)(void* host, const unsigned char* data, size_t size);
  void (*set_error)(void* host, int status, const char* type, const char* message);
  /* Since ABI 2. The encoded value of a future among the arguments (the arguments carry a
   * reference to its key): sets *data and *size to bytes that stay valid for the whole call and
   * returns 0, or returns nonzero if the host has no such key. Null when the call has no futures.
   * The plugin reads dependencies in place through it; nothing is spliced into `args`. */
  int (*resolve)(void* host, const char* key, size_t key_size, const unsigned char** data,
                 size_t* size);
} plexus_output;

typedef int (*plexus_invoke_fn)(const void* context, const unsigned char* args, size_t args_size,
                                const plexus_output* output);

/* One task. `signature` reads like "int32(int32, string)". */
typedef struct plexus_task_entry {
  const char* name;
  const char* signature;
  const void* context;
  plexus_invoke_fn invoke;
} plexus_task_entry;

/* abi_version must stay the first member in every future ABI so that a loader can always read it.
 * `error` is non-null when the plugin's registration function failed; tasks are then empty. */
typedef struct plexus_manifest {
  uint32_t abi_version;
  uint32_t struct_size;
  const char* plugin_name;
  const char* plugin_version;
  const char* sdk_version;
  const char* error;
  size_t task_count;
  const plexus_task_entry* tasks;
} plexus_manifest;

typedef const plexus_manifest* (*plexus_manifest_fn)(void);

#ifdef __cplusplus
}
#endif

#endif /* PLEXUS_ABI_H */
