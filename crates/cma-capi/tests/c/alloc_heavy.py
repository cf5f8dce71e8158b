# An allocation-heavy Python script with deterministic output: dicts, lists,
# sets, strings, JSON, object churn.
import collections
import hashlib
import json
import random

rng = random.Random(1234)
words = ["".join(rng.choice("abcdefghij") for _ in range(rng.randint(1, 12))) for _ in range(50000)]
counts = collections.Counter(words)
index = collections.defaultdict(list)
for i, w in enumerate(words):
    index[w[:2]].append(i)
blob = json.dumps({"counts": counts.most_common(200), "index": {k: v[:50] for k, v in sorted(index.items())}})
back = json.loads(blob)


class Node:
    __slots__ = ("value", "children")

    def __init__(self, value):
        self.value = value
        self.children = []


def build(depth, value):
    node = Node(value)
    if depth:
        node.children = [build(depth - 1, value * 3 + i) for i in range(3)]
    return node


def total(node):
    return node.value + sum(total(c) for c in node.children)


trees = [total(build(7, i)) for i in range(20)]
big = bytearray()
for i in range(2000):
    big += bytes(rng.getrandbits(8) for _ in range(100))
text = " ".join(words).upper().replace("A", "aa").split("J")
sets = [set(words[i:i + 1000]) for i in range(0, 50000, 1000)]
union = set().union(*sets)
print(len(counts), len(index), len(blob), len(back["counts"]))
print(sum(trees), hashlib.sha256(bytes(big)).hexdigest()[:16])
print(len(text), sum(len(t) for t in text), len(union))
