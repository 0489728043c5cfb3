#!/bin/sh
# Installs dependencies, builds Plexus and runs the main job: a LocalCluster running plugin tasks.
set -eu
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$(nproc)"
./build/examples/plexus-example
