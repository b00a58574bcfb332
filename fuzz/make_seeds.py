#!/usr/bin/env python3
"""Regenerates fuzz/seeds/ from the unit-test examples of nkp-uri, nkp-core, nkp-stun and nkp-dns.

Run from the repository root: python3 fuzz/make_seeds.py (adds files; old ones stay).
"""
import re, os, hashlib, struct, binascii
root=os.path.join(os.path.dirname(os.path.abspath(__file__)), 'seeds')
def put(target, data):
    d=os.path.join(root,target); os.makedirs(d, exist_ok=True)
    if isinstance(data,str): data=data.encode()
    name=hashlib.sha1(data).hexdigest()[:16]
    open(os.path.join(d,name),'wb').write(data)

def unesc(t):
    out=[];i=0
    while i<len(t):
        c=t[i]
        if c=='\\' and i+1<len(t):
            e=t[i+1]
            if e=='u':
                j=t.index('}',i); out.append(chr(int(t[i+3:j],16))); i=j+1; continue
            if e=='x': out.append(chr(int(t[i+2:i+4],16))); i+=4; continue
            out.append({'n':'\n','t':'\t','r':'\r','0':'\0'}.get(e,e)); i+=2; continue
        out.append(c); i+=1
    return ''.join(out)
# --- uri: string literals from nkp-uri's unit tests (one, list, fails, parse, parse_list)
src=open('crates/nkp-uri/src/tests.rs').read()+open('crates/nkp-uri/src/lib.rs').read()
pat=re.compile(r'\b(?:one|list|fails|parse|parse_list)\(\s*(r#"(.*?)"#|"((?:[^"\\]|\\.)*)")', re.S)
n=0
for m in pat.finditer(src):
    if m.group(2) is not None: s=m.group(2)
    else:
        s=unesc(m.group(3))
    put('uri', s); n+=1
print('uri', n)

# --- options: selector byte + value, selector 0xff = "key=value"
names=re.findall(r'\("([a-z0-9_]+)", (?:true|false)\)', open('crates/nkp-core/src/options.rs').read())
vals=['5000','0','4','raw','true','false','tls1.2,tls1.3','listen','a: b, c: d','65507','x\x01','']
for i,k in enumerate(names):
    for v in vals[:4]+vals[6:9]:
        put('options', bytes([i])+v.encode())
for kv in ['IDLE_TIMEOUT=5','transport=tcp','maddr=1.2.3.4','tag=1','x-proto=','idle_timout=5','Stun=']:
    put('options', b'\xff'+kv.encode())
print('options', len(names))

# --- framing: mode, chunk lengths, 0, stream
def frames(prefix, payloads):
    out=b''
    for p in payloads:
        out+=len(p).to_bytes(prefix,'big')+p
    return out
for mode,prefix in [(1,1),(2,2),(3,4)]:
    w=frames(prefix,[b'a',b'',b'hello',b'x'*300 if prefix>1 else b'y'*200])
    put('framing', bytes([mode|0x80])+b'\x01\x00'+w)        # byte at a time, 16 MiB limit
    put('framing', bytes([mode|(8<<2)])+b'\x03\x07\x00'+w)  # small limit 264
    put('framing', bytes([mode|0x80])+b'\x00'+(b'\x00\xf0\x00\x00\x01\x02'[-(prefix+2):]))
put('framing', b'\x00\x02\x05\x00hello world')
put('framing', b'\x83\x00\x00\x10\x00\x00')  # declared 1 MiB, no body
print('framing')

# --- stun: flags, port, datagram. RFC 5769 vectors from nkp-stun's tests + a Binding request.
code=open('crates/nkp-stun/src/codec.rs').read()
for m in re.finditer(r'hex\("((?:[0-9a-fA-F\s])+)"\)', code):
    b=binascii.unhexlify(re.sub(r'\s','',m.group(1)))
    if len(b)>=20:
        put('stun', b'\x00\x13\xc4'+b); put('stun', b'\x03\x13\xc4'+b)
req=struct.pack('>HHI',1,0,0x2112A442)+bytes(range(12))
put('stun', b'\x00\x13\xc4'+req); put('stun', b'\x01\x13\xc4'+req)
resp=struct.pack('>HHI',0x0101,12,0x2112A442)+bytes(12)+struct.pack('>HHBBH',0x20,8,0,1,0x1234^0x2112)+bytes([1^0x21,2^0x12,3^0xa4,4^0x42])
put('stun', b'\x01\x13\xc4'+resp)
put('stun', b'\x00\x13\xc4'+struct.pack('>HHI',1,8,0x2112A442)+bytes(12)+struct.pack('>HH',0x0024,4)+b'\x6e\x00\x01\xff')
print('stun')

# --- dns_order: seed + 7-byte records
import random
r=random.Random(1)
for n in [0,1,2,3,6,12]:
    data=bytes(8)
    for i in range(n):
        data+=struct.pack('>HHHB', r.choice([1,2,10,20]), r.choice([0,1,9,90,65535]), 5060, r.randrange(256))
    put('dns_order', data)
print('dns_order')
