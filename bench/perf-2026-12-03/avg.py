import sys
# avg.py cpu.txt start end [rate]: the mean of cpumon.py lines from 2 s after start to 1 s before end (HH:MM:SS), and per transaction at rate tx/s
f,a,b=sys.argv[1],sys.argv[2],sys.argv[3]
rate=float(sys.argv[4]) if len(sys.argv)>4 else 0
def sec(t):
    h,m,s=map(int,t.split(':')); return h*3600+m*60+s
A,B=sec(a)+2,sec(b)-1
rows=[]
for l in open(f):
    p=l.split()
    if A<sec(p[0])<=B:
        rows.append({k:float(v) for k,v in (x.split('=') for x in p[1:])})
n=len(rows)
avg={k:sum(r[k] for r in rows)/n for k in rows[0]}
s=' '.join(f'{k}={v:.3f}' for k,v in avg.items())
if rate:
    s+=' | µs/tx: '+' '.join(f'{k}={v/rate*1e6:.0f}' for k,v in avg.items() if v>0.005)
print(f'{n} s: {s}')
