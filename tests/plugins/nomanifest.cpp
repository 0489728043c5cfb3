// A shared library that is not a Plexus plugin: it exports nothing at all (everything is hidden
// by plexus_add_plugin's visibility preset), in particular no plexus_plugin_manifest.
namespace {
int unused_helper(int x) { return x + 1; }
}  // namespace

int (*volatile plexus_nomanifest_keep)(int) = &unused_helper;
