#!/usr/bin/env bash
# System tools for the PACS tests and the retrieve benchmark (Debian/Ubuntu):
#   orthanc, orthanc-dicomweb   a real PACS (DIMSE + DICOMweb) that the tests start privately, never as a service
#   dcmtk                       echoscu/storescu/findscu/getscu as an independent DICOM peer
#   iproute2                    `ip link set lo up` inside the tests' private network namespace
# Installing the orthanc package tries to start its system service; in containers policy-rc.d usually
# refuses, elsewhere the service is stopped and disabled again here (the tests run their own instance).
# usage: bash scripts/install_pacs_tools.sh
set -euo pipefail
pkgs=(orthanc orthanc-dicomweb dcmtk iproute2)
missing=()
for p in "${pkgs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -eq 0 ]; then exit 0; fi
if ! command -v apt-get >/dev/null; then
  echo "warning: apt-get not found; please install: ${missing[*]} (the PACS tests skip without them)" >&2
  exit 0
fi
sudo=""
[ "$(id -u)" -ne 0 ] && sudo="sudo"
printf '\n== installing PACS test tools: %s\n' "${missing[*]}"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# The Debian package enables an Orthanc service listening on all interfaces: not wanted on a workstation.
if command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then
  $sudo systemctl disable --now orthanc >/dev/null 2>&1 || true
fi
