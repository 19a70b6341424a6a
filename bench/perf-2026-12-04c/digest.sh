#!/bin/bash
# digest.sh NAME PHASE: run finalbench PHASE (libonly/rawonly) with statement digests reset before
cd /tmp/fb  # where finalbench was built
mysql -uroot -e "TRUNCATE performance_schema.events_statements_summary_by_digest"
./finalbench -db mysql -phases $2 -raw-sweep=false -raw 256,256,1 -d 10s 2>&1 | tail -1
mysql -uroot -e "SELECT COUNT_STAR n, ROUND(SUM_TIMER_WAIT/1e9) ms, ROUND(SUM_TIMER_WAIT/COUNT_STAR/1e6) us_each, SUM_ROWS_EXAMINED ex, SUM_ROWS_AFFECTED aff, LEFT(DIGEST_TEXT,110) q FROM performance_schema.events_statements_summary_by_digest ORDER BY SUM_TIMER_WAIT DESC LIMIT 14" > /tmp/fb/digest-$1.txt
cat /tmp/fb/digest-$1.txt
