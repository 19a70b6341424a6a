import os, time, sys, collections
names=('beam.smp','postgres','finalbench','nats-server','mariadbd','erl_child_setup','epmd')
def snap():
    d=collections.Counter()
    for pid in os.listdir('/proc'):
        if not pid.isdigit(): continue
        try:
            s=open(f'/proc/{pid}/stat').read()
        except Exception: continue
        name=s[s.index('(')+1:s.rindex(')')]
        f=s[s.rindex(')')+2:].split()
        t=int(f[11])+int(f[12])
        key=name if name in names else ('postgres' if name.startswith('postgres') else 'other')
        d[key]+=t
    return d
hz=os.sysconf('SC_CLK_TCK')
prev=snap(); pt=time.time()
while True:
    time.sleep(0.5)
    cur=snap(); ct=time.time()
    dt=ct-pt
    row={k:(cur[k]-prev[k])/hz/dt*100 for k in cur}
    print(time.strftime('%H:%M:%S')+' '+' '.join(f'{k}={v:.0f}' for k,v in sorted(row.items()) if v>=1), flush=True)
    prev,pt=cur,ct
