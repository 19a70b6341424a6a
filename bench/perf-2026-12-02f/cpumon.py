# Per-process CPU in cores, one line per interval (default 0.5 s; the runs here used 1): finalbench (fb), RabbitMQ (beam), PostgreSQL (pg), MariaDB (my), peerbench; busy is the machine's. Usage: python3 cpumon.py 1 > cpu.txt
import os,time,sys
names={'beam.smp':'beam','postgres':'pg','mariadbd':'my','finalbench':'fb','peerbench':'peer'}
hz=os.sysconf('SC_CLK_TCK')
def snap():
    d={}
    for pid in os.listdir('/proc'):
        if not pid.isdigit(): continue
        try:
            s=open(f'/proc/{pid}/stat').read()
        except: continue
        comm=s[s.index('(')+1:s.rindex(')')]
        k=names.get(comm)
        if not k: continue
        f=s[s.rindex(')')+2:].split()
        d[k]=d.get(k,0)+int(f[11])+int(f[12])
    t=open('/proc/stat').readline().split()[1:]
    tot=sum(map(int,t)); idle=int(t[3])+int(t[4])
    return d,tot,idle
iv=float(sys.argv[1]) if len(sys.argv)>1 else 0.5
p,pt,pi=snap()
while True:
    time.sleep(iv)
    c,ct,ci=snap()
    busy=((ct-pt)-(ci-pi))/hz/iv
    out=' '.join(f'{k}={(c.get(k,0)-p.get(k,0))/hz/iv:.2f}' for k in ['fb','beam','pg','my','peer'])
    print(time.strftime('%H:%M:%S'),f'busy={busy:.2f}',out,flush=True)
    p,pt,pi=c,ct,ci
