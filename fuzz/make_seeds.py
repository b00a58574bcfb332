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

# --- ws_client_handshake: flags + the fake server's response ({ACCEPT}: the right accept
# value), from nkp-ws's client tests (tests/ws.rs, src/client.rs)
ok='HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {ACCEPT}\r\n'
for flags, resp in [
    (0, ok+'\r\n'),
    (2, ok+'\r\n\x81\x05hello\x82\x03abc\x89\x00\x88\x02\x03\xe8'),   # text, binary, ping, close
    (0, ok+'\r\n\x01\x02he\x80\x03llo\x8a\x01p'),                     # fragmented text, pong
    (1, ok+'Sec-WebSocket-Protocol: sip\r\n\r\n\x81\x01x'),
    (1, ok+'Sec-WebSocket-Protocol: other\r\n\r\n'),
    (0, ok+'Sec-WebSocket-Extensions: permessage-deflate\r\n\r\n'),
    (0, 'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: bogus\r\n\r\n'),
    (0, 'HTTP/1.1 404 Not Found\r\nserver: NkPACKET\r\ncontent-length: 0\r\n\r\n'),
    (0, 'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nSec-WebSocket-Accept: {ACCEPT}\r\n\r\n'),
    (0, 'SSH-2.0-x\r\n\r\n'),
    (0, 'HTTP/1.1 abc\r\n\r\n'),
    (0, 'HTTP/1.1 101 Switching Protocols\r\nUpgrade'),
]:
    put('ws_client_handshake', bytes([flags])+resp.encode('latin-1'))
print('ws_client_handshake')

# --- ws_server_frames: flags (bit 0 deflate, bit 1 256-byte limit, bit 2
# client_no_context_takeover) + chunk size + client frames (masked)
import zlib
def cframe(op, payload, fin=True, mask=b'\x11\x22\x33\x44', length=None, rsv=0):
    n=len(payload) if length is None else length
    h=bytes([(0x80 if fin else 0)|rsv|op])
    if n<126: h+=bytes([0x80|n])
    elif n<65536: h+=bytes([0x80|126])+n.to_bytes(2,'big')
    else: h+=bytes([0x80|127])+n.to_bytes(8,'big')
    return h+mask+bytes(b^mask[i%4] for i,b in enumerate(payload))
def deflated(*msgs):
    z=zlib.compressobj(wbits=-15); out=[]
    for m in msgs:
        c=z.compress(m)+z.flush(zlib.Z_SYNC_FLUSH); assert c.endswith(b'\x00\x00\xff\xff'); out.append(c[:-4])
    return out
hello=bytes([0xf2,0x48,0xcd,0xc9,0xc9,0x07,0x00])
big1,big2=deflated(b'compressible text '*300, b'compressible text '*300)
bomb,=deflated(bytes(1<<20))
for flags, step, data in [
    (0, 0, cframe(1,b'hello')),
    (0, 1, cframe(2,b'\x00\x01\x02')+cframe(9,b'ping')+cframe(10,b'')+cframe(8,b'\x03\xe8bye')),
    (0, 3, cframe(1,b'hel',fin=False)+cframe(9,b'')+cframe(0,b'lo')),
    (0, 0, cframe(1,b'\xff\xfe')),                           # bad UTF-8: 1007
    (0, 0, cframe(8,b'\x03')),                               # 1-byte close payload
    (0, 0, cframe(8,b'\x03\xed')),                           # close code 1005
    (0, 0, cframe(3,b'x')),                                  # reserved opcode
    (0, 0, bytes([0x81,0x05])+b'hello'),                     # unmasked client frame
    (2, 7, cframe(2,b'y'*300)),                              # over the 256 limit: 1009
    (2, 0, cframe(2,b'y'*200,fin=False)+cframe(0,b'y'*200)), # fragments over the limit
    (0, 0, cframe(2,b'',length=1<<40)),                      # declared 1 TiB, no body
    (0, 0, cframe(1,b'x',rsv=0x40)),                         # RSV1 without deflate
    (1, 0, cframe(1,hello,rsv=0x40)),                        # RFC 7692 "Hello"
    (1, 2, cframe(1,hello,rsv=0x40)+cframe(1,bytes([0xf2,0x00,0x11,0x00,0x00]),rsv=0x40)),
    (1, 5, cframe(1,big1[:20],fin=False,rsv=0x40)+cframe(9,b'')+cframe(0,big1[20:])+cframe(1,big2,rsv=0x40)),
    (5, 0, cframe(1,big1,rsv=0x40)+cframe(1,deflated(b'compressible text '*300)[0],rsv=0x40)),
    (1, 0, cframe(2,bomb,rsv=0x40)),                         # 1 MiB of zeros: 1009
    (3, 0, cframe(2,bomb,rsv=0x40)),
    (1, 0, cframe(0,b'x',fin=True,rsv=0x40)),                # RSV1 on a continuation
    (1, 0, cframe(2,b'\xff'*40,rsv=0x40)),                  # not deflate data: 1002
]:
    put('ws_server_frames', bytes([flags, step])+data)
print('ws_server_frames')

# --- http_head: requests from nkp-http's and nkp-ws's tests
for req in [
    'GET / HTTP/1.1\r\nHost: h\r\n\r\n',
    'POST /test1 HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello',
    'POST /x HTTP/1.1\r\nHost: h\r\nContent-Length: 11\r\n\r\nhello worldGET /a HTTP/1.1\r\nHost: h\r\n\r\n',
    'POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n',
    'GET /a/b HTTP/1.1\r\nHost: h\r\nx-decline: 1\r\n\r\n',
    'GET / HTTP/1.1\r\nHost: h\r\nx-big: '+'a'*3000+'\r\n\r\n',
    'GET / HTTP/1.1\r\nHost: h\r\n'+''.join('x-h%d: v\r\n'%i for i in range(120))+'\r\n',
    'GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n',
    'GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 8\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n',
    'GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: short\r\n\r\n',
    'GET /dom2 HTTP/1.1\r\nHost: x\r\n\r\n',
    'GET /%2e%2e/../x?q=1 HTTP/1.1\r\nHost: [::1]:80\r\n\r\n',
    'OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n',
    'GET http://other.example/ HTTP/1.1\r\n\r\n',
    'GET / HTTP/1.0\r\n\r\n',
    '\x16\x03\x01garbage\r\n\r\n',
]:
    put('http_head', req.encode('latin-1'))
put('http_head', 'GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n'.encode()+cframe(1,b'hi')+cframe(8,b''))
print('http_head')
