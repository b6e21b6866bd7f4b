#!/usr/bin/env python3
"""Fails when a module of a crate imports a module that imports it back.

Usage: tests/check_cycles.py CRATE_SRC_DIR...

Each `.rs` file is a module (`mod.rs`, `lib.rs`, `main.rs` name their
directory). A module depends on another when its code outside comments and
`#[cfg(test)]` names it through `use crate::...`, `use super::...` or a
`crate::`/`super::` path. A pair that depends on each other is printed as
`SRC A <-> B` and the exit status is 1. `mod` declarations are not imports:
a parent declaring a child and the child using a sibling is fine.
"""
import os,re,sys
def modules(src):
    mods={}
    for root,_,files in os.walk(src):
        for f in files:
            if not f.endswith('.rs'): continue
            p=os.path.join(root,f); rel=os.path.relpath(p,src)[:-3].split(os.sep)
            if rel[-1] in ('mod','lib','main'): rel=rel[:-1]
            mods[tuple(rel)]=p
    return mods
def resolve(path,cur,mods):
    parts=path.split('::')
    if parts[0]=='crate': base=[]; parts=parts[1:]
    elif parts[0]=='super':
        base=list(cur)
        while parts and parts[0]=='super': base=base[:-1]; parts=parts[1:]
    elif parts[0]=='self': base=list(cur); parts=parts[1:]
    else: return None
    full=base+parts
    for n in range(len(full),-1,-1):
        if tuple(full[:n]) in mods: return tuple(full[:n])
    return None
def expand(stmt):
    # expand a::{b, c::{d}} roughly
    stmt=stmt.strip()
    m=re.match(r'^(.*?)::\{(.*)\}$',stmt,re.S)
    if not m: return [stmt]
    pre,inner=m.group(1),m.group(2)
    out=[];depth=0;cur=''
    for ch in inner:
        if ch=='{':depth+=1
        if ch=='}':depth-=1
        if ch==',' and depth==0: out.append(cur);cur=''
        else: cur+=ch
    out.append(cur)
    res=[]
    for o in out:
        o=o.strip()
        if not o: continue
        if o=='self': res.append(pre); continue
        res+= [pre+'::'+x for x in expand(o)]
    return res
bad=0
for crate in sys.argv[1:]:
    mods=modules(crate)
    g={m:set() for m in mods}
    for m,p in mods.items():
        s=open(p).read()
        s=s.split('#[cfg(test)]')[0]
        s=re.sub(r'//[^\n]*','',s)
        for u in re.findall(r'^\s*(?:pub(?:\([a-z]+\))?\s+)?use\s+([^;]+);',s,re.M):
            for e in expand(u):
                e=re.sub(r'\s+as\s+\w+$','',e.strip())
                r=resolve(e,m,mods)
                if r is not None and r!=m and not (len(r)<len(m) and m[:len(r)]==r and e.split('::')[0]!='crate' and False):
                    g[m].add(r)
        for e in re.findall(r'\b((?:crate|super)(?:::\w+)+)',s):
            r=resolve(e,m,mods)
            if r is not None and r!=m: g[m].add(r)
    for a in g:
        for b in g[a]:
            if a in g.get(b,()) and a<b:
                print(crate, '::'.join(a) or 'lib', '<->', '::'.join(b) or 'lib'); bad+=1
sys.exit(1 if bad else 0)
