#!/usr/bin/env python3
"""Fails when a module of a crate imports a module that imports it back.

Usage: tests/check_cycles.py CRATE_SRC_DIR...

Each `.rs` file is a module (`mod.rs`, `lib.rs`, `main.rs` name their
directory). A module depends on another when its code outside comments and
`#[cfg(test)]` names it through `use crate::...`, `use super::...` or a
`crate::`/`super::` path. Modules that depend on each other are printed as
`SRC cycle: A -> B -> ...` with the uses that close it, and the exit status
is 1. `mod` declarations are not imports, and a module using its own
ancestor's items is nesting, not a cycle; any other loop of any length is
(strongly connected components).
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
    elif tuple(list(cur)+[parts[0]]) in mods: base=list(cur)
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
def is_ancestor(a,m):
    # A module using its own parent's items (the trait it implements, the
    # types of the section it checks) is how Rust nests modules: the
    # parent contains it. What this check refuses is siblings or cousins
    # that lean on each other, however long the loop.
    return len(a)<len(m) and m[:len(a)]==a
bad=0
for crate in sys.argv[1:]:
    mods=modules(crate)
    g={m:set() for m in mods}
    for m,p in mods.items():
        s=open(p).read()
        # Test modules (`#[cfg(test)] mod NAME {`, last in a file by the
        # convention of this tree) may use anything.
        s=re.split(r'#\[cfg\(test\)\]\s*mod\s+\w+\s*\{',s)[0]
        s=re.sub(r'//[^\n]*','',s)
        for u in re.findall(r'^\s*(?:pub(?:\([a-z]+\))?\s+)?use\s+([^;]+);',s,re.M):
            for e in expand(u):
                e=re.sub(r'\s+as\s+\w+$','',e.strip())
                r=resolve(e,m,mods)
                if r is not None and r!=m and not is_ancestor(r,m):
                    g[m].add(r)
        for e in re.findall(r'(?<![\w:])((?:crate|super)(?:::\w+)+)',s):
            r=resolve(e,m,mods)
            if r is not None and r!=m and not is_ancestor(r,m): g[m].add(r)
    # Tarjan's strongly connected components: any component of more than
    # one module is a cycle, however long.
    index={}; low={}; stack=[]; on=set(); counter=[0]
    sys.setrecursionlimit(10000)
    def visit(v):
        index[v]=low[v]=counter[0]; counter[0]+=1; stack.append(v); on.add(v)
        for w in sorted(g[v]):
            if w not in index:
                visit(w); low[v]=min(low[v],low[w])
            elif w in on:
                low[v]=min(low[v],index[w])
        if low[v]==index[v]:
            comp=[]
            while True:
                w=stack.pop(); on.discard(w); comp.append(w)
                if w==v: break
            if len(comp)>1:
                global bad
                bad+=1
                print(crate, 'cycle:', ' -> '.join('::'.join(c) or 'lib' for c in sorted(comp)))
                cs=set(comp)
                for x in sorted(comp):
                    for y in sorted(g[x] & cs):
                        print('   ', '::'.join(x) or 'lib', 'uses', '::'.join(y) or 'lib')
    for v in sorted(g):
        if v not in index: visit(v)
sys.exit(1 if bad else 0)
