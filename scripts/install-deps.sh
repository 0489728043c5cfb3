#!/bin/sh
# Installs everything Plexus needs to build and test on Debian 12, from Debian's packages only.
set -eu
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends \
  g++ cmake make pkg-config ca-certificates \
  libzmq3-dev cppzmq-dev libflatbuffers-dev flatbuffers-compiler \
  libboost-dev libboost-filesystem-dev libtomlplusplus-dev libspdlog-dev libcli11-dev \
  libxxhash-dev nlohmann-json3-dev robin-map-dev libgtest-dev libgmock-dev libbenchmark-dev >/dev/null
