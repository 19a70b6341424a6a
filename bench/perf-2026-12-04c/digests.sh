#!/bin/bash
# One finalbench phase on MariaDB with its statement digests reset before it; prints the
# phase's rate and its COMMITs' count and mean wait; TOP=FILE also writes the 14 statements
# that took the most time. Needs MariaDB started with --performance-schema=ON.
#   FINALBENCH=/tmp/fb/finalbench [D=40s] [TOP=FILE] bash digests.sh NAME PHASE [finalbench flags]
set -e
fb=${FINALBENCH:?a finalbench binary}
name=$1 phase=$2; shift 2
q() { mysql -uroot -N -e "$1"; }
[ "$(q "SELECT @@performance_schema")" = 1 ] || { echo "digests.sh: performance_schema is off" >&2; exit 1; }
q "TRUNCATE performance_schema.events_statements_summary_by_digest"
rate=$("$fb" -db mysql -phases "$phase" -raw-sweep=false -raw 256,256,1 -d "${D:-10s}" "$@" 2>&1 | tail -1)
digests=performance_schema.events_statements_summary_by_digest
commits=$(q "SELECT CONCAT(COUNT_STAR, ' commits, ', ROUND(SUM_TIMER_WAIT/COUNT_STAR/1e6), ' us each') FROM $digests WHERE DIGEST_TEXT LIKE 'COMMIT%'")
echo "$name: $rate; $commits"
if [ -n "$TOP" ]; then
  mysql -uroot -e "SELECT COUNT_STAR n, ROUND(SUM_TIMER_WAIT/1e9) ms, ROUND(SUM_TIMER_WAIT/COUNT_STAR/1e6) us_each, SUM_ROWS_EXAMINED ex, SUM_ROWS_AFFECTED aff, LEFT(DIGEST_TEXT,110) q FROM $digests ORDER BY SUM_TIMER_WAIT DESC LIMIT 14" > "$TOP"
fi
