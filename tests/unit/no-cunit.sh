#!/bin/sh
# no-cunit: stands in for the unit tests when configure found no CUnit, so
# make check says why they did not run (automake's SKIP, exit 77).
echo "SKIP: the CUnit unit tests were not built: configure found no CUnit (Debian: libcunit1-dev)"
exit 77
