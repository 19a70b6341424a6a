#!/bin/bash
# dg.sh NAME PHASE [flags]: COMMIT's count and mean from the digests around one finalbench phase
cd /tmp/fb  # where finalbench was built
n=$1; p=$2; shift 2
mysql -uroot -e "TRUNCATE performance_schema.events_statements_summary_by_digest"
r=$(./finalbench -db mysql -phases $p -raw-sweep=false -raw 256,256,1 -d ${D:-10s} "$@" 2>&1 | tail -1)
c=$(mysql -uroot -N -e "SELECT CONCAT(COUNT_STAR,' commits, ',ROUND(SUM_TIMER_WAIT/COUNT_STAR/1e6),' us each') FROM performance_schema.events_statements_summary_by_digest WHERE DIGEST_TEXT LIKE 'COMMIT%'")
echo "$n: $r; $c"
