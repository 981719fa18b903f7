#!/usr/bin/env bash
# lint.sh: swift format's linter over the Swift sources with the checked-in .swift-format
# (4-space indent, 120 columns, no force unwraps, no try!). Fix findings with
#   swift format format --in-place --recursive Sources Tests Package.swift fuzz/Sources fuzz/Package.swift
set -euo pipefail
cd "$(dirname "$0")/.."
swift format lint --strict --recursive Sources Tests Package.swift fuzz/Sources fuzz/Package.swift
echo "lint: clean"
