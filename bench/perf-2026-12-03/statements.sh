#!/bin/bash
# MariaDB global status deltas around a 10 s finalbench phase (libonly or rawonly):
#   bash bench/perf-2026-12-03/statements.sh libonly
# usage: stat.sh phase ; prints Com_* deltas and Questions over a finalbench -phases $1 run
q="SELECT VARIABLE_NAME, VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS WHERE VARIABLE_NAME IN ('QUESTIONS','COM_STMT_PREPARE','COM_STMT_EXECUTE','COM_STMT_CLOSE','COM_INSERT','COM_DELETE','COM_DELETE_MULTI','COM_SELECT','COM_UPDATE','COM_UPDATE_MULTI','COM_COMMIT','COM_BEGIN','COM_ROLLBACK','COM_SET_OPTION','HANDLER_WRITE','HANDLER_DELETE','HANDLER_READ_KEY','HANDLER_READ_NEXT','HANDLER_UPDATE','INNODB_ROWS_INSERTED','INNODB_ROWS_DELETED','INNODB_ROWS_READ','INNODB_ROWS_UPDATED','SELECT_SCAN','HANDLER_READ_RND_NEXT','COM_SAVEPOINT','BYTES_RECEIVED','BYTES_SENT')"
mysql -uroot -N -e "$q" | sort > /tmp/s0
go run ./cmd/finalbench -db mysql -phases $1 -raw-sweep=false -raw 256,256,1 -d 10s -out /tmp/st-$1 > /tmp/st-$1.log 2>&1
mysql -uroot -N -e "$q" | sort > /tmp/s1
join /tmp/s0 /tmp/s1 | awk '{printf "%-22s %12d\n", $1, $3-$2}'
grep -E "commit rate|raw DB \+ broker|tx/s" /tmp/st-$1.log | head -5
