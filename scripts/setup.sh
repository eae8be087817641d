#!/usr/bin/env bash
# Everything p2pdata needs on a fresh Debian machine: system packages, the venv, the HDFS jars.
set -euo pipefail
venv=${1:-.venv}
cd "$(dirname "$0")/.."

need_apt=()
command -v javac >/dev/null || need_apt+=(openjdk-17-jdk-headless)
command -v mvn >/dev/null || need_apt+=(maven)
command -v chromium >/dev/null || need_apt+=(chromium)
command -v ip >/dev/null || need_apt+=(iproute2)  # the Ray tests run in a network namespace
# A standard BitTorrent client: the interop tests fetch from and seed to it (issue 18).
command -v qbittorrent-nox >/dev/null || need_apt+=(qbittorrent-nox)
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need_apt[@]}"
  else
    echo "setup: please install ${need_apt[*]} (sudo apt-get install ${need_apt[*]})" >&2
  fi
fi

python=$(command -v python3.11 || command -v python3)
[ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
"$venv/bin/pip" install -q --upgrade pip
# ray: the Ray engine's tests run a real two-node Ray cluster (about 50 s, 600 MB).
"$venv/bin/pip" install -q -e '.[test,tf,pandas,yarn,ray]'

# Hadoop 3 jars (Maven Central, by coordinates) for the local HDFS and YARN; cached.
"$venv/bin/python" -m p2pdata.hdfs.localcluster fetch
