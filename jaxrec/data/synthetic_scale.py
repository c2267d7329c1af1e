"""The synthetic generator's vectorised sampler, for catalogues and user counts at scale.

The planted process is the one of `jaxrec.data.synthetic` (same `_Model`: topics, per-user
topic preferences, within-topic successor chains, popularity, ratings from affinity). The exact
sampler there forms each step's distribution over the whole catalogue, O(items) per
interaction; here every user of a block takes a step at once and the next item is drawn from the
same distribution as a mixture, without ever forming it:

    with probability p_topic[z] * chain      one of the 3 chain successors (.5 / .3 / .2)
    otherwise                                 a topic t from p_topic, down-weighted by
                                              (1 - chain) for t = z, then an item of t by
                                              popularity (one `searchsorted` per draw)

where z is the last item's topic and p_topic = (1 - stay) theta_u + stay * onehot(z). An item
the user has already seen is rejected and drawn again, which is exactly the exact sampler's
renormalisation over unseen items. Cost: O(interactions), memory: one block of users.

Users are written block by block (reviews interleaved within a block), so the files stream to
disk; the ground truth (the exact next-item distribution, O(items) per user) is written for a
seeded sample of users only (`truth_users`), and `synthetic_model.json` holds the topic
preferences of those users.
"""

from __future__ import annotations

import json
import logging
import os
import time

import numpy as np

from jaxrec.data import synthetic

log = logging.getLogger(__name__)

BLOCK_USERS = 1 << 16
TRUTH_USERS = 10_000
_MAX_REDRAWS = 64
_SUMMARIES = ("Not for me", "Meh", "Okay", "Good", "Love it")
_EPOCH_DAY = np.datetime64("1970-01-01", "D")


class _TopicSampler:
    """Draws items of given topics by within-topic popularity (vectorised)."""

    def __init__(self, model: synthetic._Model):
        order = np.lexsort((np.arange(model.num_items), model.item_topic))  # by topic
        self.members = order  # [num_items] items grouped by topic
        cum = np.zeros(len(order))
        counts = np.bincount(model.item_topic, minlength=model.num_topics)
        self.starts = np.concatenate([[0], np.cumsum(counts)])
        for z in range(model.num_topics):
            lo, hi = self.starts[z], self.starts[z + 1]
            c = np.cumsum(model.pop[order[lo:hi]])
            cum[lo:hi] = z + c / c[-1]  # monotone over the whole array: topic z in (z, z + 1]
        self.cum = cum

    def draw(self, topics: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """[m] items, item i of topic z with probability pop[i] (pop sums to 1 per topic)."""
        u = topics + rng.random(len(topics))
        k = np.searchsorted(self.cum, u, side="left")
        k = np.clip(k, self.starts[topics], self.starts[topics + 1] - 1)
        return self.members[k]


def _choose_rows(p: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """[m] one index per row of p [m, T] (rows sum to 1), inverse-CDF."""
    cum = np.cumsum(p, axis=1)
    u = rng.random(len(p)) * cum[:, -1]
    return np.minimum((cum < u[:, None]).sum(axis=1), p.shape[1] - 1)


def _next_items(model, sampler, theta, last, seen, rng):
    """[m] next item per user: theta [m, T], last [m], seen [m, L] (-1 padded)."""
    m = len(last)
    out = np.full(m, -1, np.int64)
    todo = np.arange(m)
    for _ in range(_MAX_REDRAWS):
        z = model.item_topic[last[todo]]
        p_topic = (1 - model.stay) * theta[todo]
        p_topic[np.arange(len(todo)), z] += model.stay
        chain_mass = p_topic[np.arange(len(todo)), z] * model.chain
        by_chain = rng.random(len(todo)) < chain_mass
        cand = np.empty(len(todo), np.int64)
        succ = _choose_rows(np.tile([0.5, 0.3, 0.2], (int(by_chain.sum()), 1)), rng)
        cand[by_chain] = model.successors[last[todo[by_chain]], succ]
        rest = ~by_chain
        q = p_topic[rest]
        q[np.arange(len(q)), z[rest]] *= 1 - model.chain
        cand[rest] = sampler.draw(_choose_rows(q / q.sum(axis=1, keepdims=True), rng), rng)
        ok = ~(seen[todo] == cand[:, None]).any(axis=1)
        out[todo[ok]] = cand[ok]
        todo = todo[~ok]
        if not len(todo):
            return out
    for r in todo.tolist():  # exhausted neighbourhoods: the exact distribution
        prev = seen[r][seen[r] >= 0]
        out[r] = rng.choice(model.num_items, p=model.next_distribution(theta[r], last[r], prev))
    return out


def _sample_block(model, sampler, rng, users: int, mean_length: float, max_length: int):
    """One block: lengths [b], items [b, max_length] (-1 padded), theta [b, T]."""
    theta = rng.dirichlet(np.full(model.num_topics, model.alpha), size=users)
    lengths = np.minimum(max_length, 5 + rng.poisson(max(mean_length - 5, 0), size=users))
    seqs = np.full((users, max_length), -1, np.int64)
    seqs[:, 0] = sampler.draw(_choose_rows(theta, rng), rng)
    for t in range(1, int(lengths.max())):
        live = np.flatnonzero(lengths > t)
        seqs[live, t] = _next_items(model, sampler, theta[live], seqs[live, t - 1],
                                    seqs[live, :t], rng)  # fmt: skip
    return lengths, seqs, theta


def _block_reviews(model, rng, lengths, seqs, theta):
    """Flat (row, item, rating, unix time) of a block's interactions, user by user."""
    rows, pos = np.nonzero(seqs >= 0)  # row-major: each user's items in order
    items = seqs[rows, pos]
    affinity = np.log(theta[rows, model.item_topic[items]] * model.num_topics + 1e-9)
    noise = rng.normal(0, 0.7, len(items))
    rating = np.clip(np.round(3.2 + 0.7 * affinity + noise), 1, 5).astype(np.int64)
    gaps = rng.integers(0, 40, len(items)) * 86_400
    gaps[rng.random(len(items)) < 0.1] = 0  # same-day ties: order must come from the file
    gaps[pos == 0] = 0
    first = np.cumsum(lengths) - lengths  # flat index of each user's first interaction
    cum = np.cumsum(gaps)
    start = rng.integers(1_262_304_000, 1_388_534_400, len(lengths))  # 2010 .. 2014
    ts = start[rows] + cum - cum[first][rows]
    return rows, items, rating, ts


def _interleave(rng, lengths) -> np.ndarray:
    """Flat indices of the block's interactions in file order: a random merge of the users
    that keeps each user's order."""
    owners = rng.permutation(np.repeat(np.arange(len(lengths)), lengths))
    first = np.cumsum(lengths) - lengths
    order = np.argsort(owners, kind="stable")  # the k-th review of each user, in file order
    rank = np.empty(len(owners), np.int64)
    rank[order] = np.arange(len(owners)) - first[owners[order]]
    return first[owners] + rank


def _truth_record(model, theta, seq, asins) -> dict:
    """The exact next-item distribution before the user's last item (top 100)."""
    dist = model.next_distribution(theta, int(seq[-2]), seq[:-1])
    top = np.argsort(-dist, kind="stable")[: synthetic.TOP_N_STORED]
    return {
        "history": [asins[i] for i in seq[:-1].tolist()],
        "target": asins[int(seq[-1])],
        "next_item_distribution": [[asins[i], float(dist[i])] for i in top if dist[i] > 0],
    }


def _review_lines(user_ids, asins, title_reprs, owner, item, rating, ts) -> str:
    """Amazon-2014 review lines (Python dict literals, as `repr` of the exact sampler's dicts)."""
    days = (ts // 86_400).astype("timedelta64[D]") + _EPOCH_DAY
    ymd = days.astype(object)
    out = []
    for u, i, r, t, d in zip(owner.tolist(), item.tolist(), rating.tolist(), ts.tolist(), ymd,
                             strict=True):  # fmt: skip
        uid = user_ids[u]
        text = title_reprs[i][:-1] + f": rated {r} of 5." + title_reprs[i][-1]
        out.append(
            f"{{'reviewerID': '{uid}', 'asin': '{asins[i]}', 'reviewerName': "
            f"'Reviewer {uid[-4:]}', 'helpful': [0, 0], 'reviewText': {text}, "
            f"'overall': {float(r)!r}, 'summary': '{_SUMMARIES[r - 1]}', "
            f"'unixReviewTime': {t}, 'reviewTime': '{d.month:02d} {d.day:02d}, {d.year}'}}\n"
        )
    return "".join(out)


def generate_at_scale(
    out_dir: str,
    num_users: int,
    num_items: int,
    num_topics: int = 20,
    mean_length: float = 12.0,
    max_length: int = 50,
    seed: int = 0,
    truth_users: int = TRUTH_USERS,
    compresslevel: int = 1,
) -> dict:
    """`synthetic.generate`'s files (see the module docstring for what differs) in time and
    memory linear in the output: about a million interactions per few seconds."""
    if num_items < 4 * num_topics or num_users < 10:
        raise ValueError("need at least 4 items per topic and 10 users")
    t0 = time.time()
    rng = np.random.default_rng(seed)
    model = synthetic._Model(num_items, num_topics, rng)
    sampler = _TopicSampler(model)
    asins = [f"S{k:09d}" for k in rng.permutation(num_items).tolist()]
    user_ids = [f"U{k:08d}" for k in rng.choice(10 * num_users, num_users, replace=False).tolist()]
    texts = synthetic._item_texts(rng, model.item_topic, num_topics)
    title_reprs = [repr(t["title"]) for t in texts]
    truth_rows = set(
        np.sort(rng.choice(num_users, min(truth_users, num_users), replace=False)).tolist()
    )
    os.makedirs(out_dir, exist_ok=True)
    interactions, truth, thetas = 0, {}, {}
    with synthetic._gzip_text(os.path.join(out_dir, synthetic.REVIEWS_FILE), compresslevel) as f:
        for start in range(0, num_users, BLOCK_USERS):
            b = min(BLOCK_USERS, num_users - start)
            brng = np.random.default_rng([seed, 1, start])
            lengths, seqs, theta = _sample_block(model, sampler, brng, b, mean_length, max_length)
            rows, items, rating, ts = _block_reviews(model, brng, lengths, seqs, theta)
            src = _interleave(brng, lengths)
            f.write(_review_lines(user_ids[start : start + b], asins, title_reprs, rows[src],
                                  items[src], rating[src], ts[src]))  # fmt: skip
            interactions += len(items)
            for r in sorted(set(range(start, start + b)) & truth_rows):
                seq = seqs[r - start, : lengths[r - start]]
                truth[user_ids[r]] = _truth_record(model, theta[r - start], seq, asins)
                thetas[user_ids[r]] = np.round(theta[r - start], 6).tolist()
            rate = interactions / max(time.time() - t0, 1e-9)
            log.info("synthetic: %d/%d users, %d interactions (%.0f interactions/s)",
                     start + b, num_users, interactions, rate)  # fmt: skip
    with synthetic._gzip_text(os.path.join(out_dir, synthetic.META_FILE), compresslevel) as f:
        for i in np.argsort(asins).tolist():
            f.write(repr({"asin": asins[i], **texts[i]}) + "\n")
    with open(os.path.join(out_dir, synthetic.GROUND_TRUTH_FILE), "w", encoding="utf-8") as f:
        f.write(json.dumps(truth))  # one shot: the C encoder (json.dump streams in Python)
    params = {
        "seed": seed, "num_users": num_users, "num_items": num_items, "num_topics": num_topics,
        "mean_length": mean_length, "max_length": max_length, "stay": model.stay,
        "chain": model.chain, "alpha": model.alpha, "sampler": "vectorised",
        "item_topic": {asins[i]: int(z) for i, z in enumerate(model.item_topic.tolist())},
        "user_theta": thetas,  # the ground-truth sample's users only
    }  # fmt: skip
    with open(os.path.join(out_dir, synthetic.MODEL_FILE), "w", encoding="utf-8") as f:
        f.write(json.dumps(params))
    return {
        "users": num_users,
        "items": num_items,
        "interactions": interactions,
        "topics": num_topics,
        "sampler": "vectorised",
        "truth_users": len(truth),
        "oracle_expected": synthetic.expected_oracle_metrics(truth.values()),
        "seconds": round(time.time() - t0, 2),
    }
