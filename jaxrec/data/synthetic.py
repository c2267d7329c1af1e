"""The embedded default data: a seeded generator with planted, learnable structure.

The model (all of it written to `synthetic_model.json`):
  * T topics; each item belongs to one topic, and its title, brand, categories and description
    are drawn from that topic's words, so text-based semantic ids can recover topics.
  * Each user has a topic preference theta_u ~ Dirichlet(alpha). After an item of topic z the
    next topic is z with probability `stay`, else drawn from theta_u.
  * Within a topic, the next item follows a planted chain (each topic's items in a random cycle:
    after item i come its next 3 chain successors with weights .5/.3/.2) with probability
    `chain`, else topic popularity (Zipf mixed with uniform). Items are never repeated.
  * Ratings grow with the user's affinity to the item's topic.
Because the process is Markov given (theta_u, last item, seen items), each user's true
next-item distribution is known in closed form: it is written to `ground_truth.json` and gives
oracle Recall@K / NDCG@K, the best any recommender can expect.

Files: `reviews_Synthetic_5.json.gz` and `meta_Synthetic.json.gz` in the Amazon 2014 format
(one Python dict literal per line), `ground_truth.json`, `synthetic_model.json`.
"""

from __future__ import annotations

import datetime
import gzip
import io
import json
import logging
import os
import time

import numpy as np

from jaxrec.data.dataset import DataError, Dataset

log = logging.getLogger(__name__)

REVIEWS_FILE = "reviews_Synthetic_5.json.gz"
META_FILE = "meta_Synthetic.json.gz"
GROUND_TRUTH_FILE = "ground_truth.json"
MODEL_FILE = "synthetic_model.json"
METRIC_KS = (1, 5, 10, 20)
TOP_N_STORED = 100
# The exact sampler costs O(items) per interaction: above this many users x items (a few tens
# of seconds of it) `generate` draws with the vectorised sampler instead.
EXACT_MAX_COST = 200_000_000

_TOPICS = [
    (
        "Skin Care",
        ["Lotion", "Cream", "Serum", "Moisturizer", "Cleanser"],
        ["Hydrating", "Soothing", "Radiant", "Gentle"],
    ),
    (
        "Hair Care",
        ["Shampoo", "Conditioner", "Hair Mask", "Hair Oil", "Detangler"],
        ["Repairing", "Volumizing", "Silky", "Smoothing"],
    ),
    (
        "Makeup",
        ["Foundation", "Concealer", "Blush", "Bronzer", "Primer"],
        ["Matte", "Luminous", "Long-Wear", "Natural"],
    ),
    (
        "Eyes",
        ["Mascara", "Eyeliner", "Eye Shadow", "Brow Pencil", "Lash Serum"],
        ["Waterproof", "Smudge-Proof", "Defining", "Bold"],
    ),
    (
        "Lips",
        ["Lipstick", "Lip Gloss", "Lip Balm", "Lip Liner", "Lip Stain"],
        ["Velvet", "Glossy", "Tinted", "Plumping"],
    ),
    (
        "Nails",
        ["Nail Polish", "Top Coat", "Base Coat", "Cuticle Oil", "Nail File"],
        ["Quick-Dry", "Chip-Resistant", "Strengthening", "Glitter"],
    ),
    (
        "Fragrance",
        ["Eau de Parfum", "Body Mist", "Cologne", "Perfume Oil", "Solid Perfume"],
        ["Floral", "Woody", "Citrus", "Musky"],
    ),
    (
        "Bath",
        ["Bath Bomb", "Bubble Bath", "Bath Salts", "Shower Gel", "Body Wash"],
        ["Relaxing", "Foaming", "Aromatic", "Mineral"],
    ),
    (
        "Sun Care",
        ["Sunscreen", "After-Sun Gel", "Tanning Lotion", "Sun Stick", "SPF Spray"],
        ["Broad-Spectrum", "Reef-Safe", "Sheer", "Sport"],
    ),
    (
        "Men's Grooming",
        ["Beard Oil", "Shaving Cream", "Aftershave", "Beard Balm", "Razor"],
        ["Rugged", "Cooling", "Precision", "Classic"],
    ),
    (
        "Tools",
        ["Makeup Brush", "Sponge", "Eyelash Curler", "Tweezers", "Mirror"],
        ["Professional", "Compact", "Ergonomic", "Travel"],
    ),
    (
        "Oral Care",
        ["Toothpaste", "Mouthwash", "Whitening Strips", "Floss", "Toothbrush"],
        ["Whitening", "Fresh Mint", "Sensitive", "Charcoal"],
    ),
    (
        "Body Care",
        ["Body Butter", "Body Scrub", "Hand Cream", "Foot Cream", "Body Oil"],
        ["Nourishing", "Exfoliating", "Rich", "Silky"],
    ),
    (
        "Anti-Aging",
        ["Retinol Cream", "Eye Cream", "Peptide Serum", "Night Cream", "Firming Mask"],
        ["Firming", "Renewing", "Advanced", "Restorative"],
    ),
    (
        "Acne Care",
        ["Spot Treatment", "Clay Mask", "Toner", "Salicylic Wash", "Pore Strips"],
        ["Clarifying", "Oil-Free", "Purifying", "Calming"],
    ),
    (
        "Hair Styling",
        ["Hair Spray", "Styling Gel", "Pomade", "Mousse", "Texturizing Spray"],
        ["Strong-Hold", "Flexible", "Shine", "Matte"],
    ),
    (
        "Hair Tools",
        ["Hair Dryer", "Flat Iron", "Curling Wand", "Hot Brush", "Diffuser"],
        ["Ionic", "Ceramic", "Titanium", "Cordless"],
    ),
    (
        "Natural",
        ["Aloe Gel", "Shea Butter", "Coconut Oil", "Rosehip Oil", "Argan Oil"],
        ["Organic", "Cold-Pressed", "Unrefined", "Pure"],
    ),
    (
        "Kids",
        ["Kids Shampoo", "Baby Lotion", "Diaper Cream", "Kids Toothpaste", "Baby Wash"],
        ["Tear-Free", "Gentle", "Hypoallergenic", "Fun"],
    ),
    (
        "Spa",
        ["Face Mask", "Sheet Mask", "Facial Roller", "Steamer", "Gua Sha"],
        ["Luxury", "Cooling", "Jade", "Detox"],
    ),
]
_BRAND_SYLLABLES = ["Lu", "Ve", "Ora", "Mi", "Sol", "Na", "Ki", "Ze", "Bel", "Ar", "Tho", "Rae"]
_SIZES = ["1 oz", "2 oz", "4 oz", "8 oz", "12 oz", "Travel Size", "Value Pack", "Set of 2"]


def _brands(rng: np.random.Generator, n: int) -> list[str]:
    out: list[str] = []
    while len(out) < n:
        name = "".join(rng.choice(_BRAND_SYLLABLES, size=int(rng.integers(2, 4)))).capitalize()
        if name not in out:
            out.append(name)
    return out


def _item_texts(rng: np.random.Generator, item_topic: np.ndarray, num_topics: int):
    brands = _brands(rng, 3 * num_topics)
    items = []
    for i, z in enumerate(item_topic.tolist()):
        category, nouns, adjectives = _TOPICS[z % len(_TOPICS)]
        brand = brands[3 * z + int(rng.integers(3))]
        noun, adj = str(rng.choice(nouns)), str(rng.choice(adjectives))
        title = f"{brand} {adj} {noun} {rng.choice(_SIZES)}"
        if z >= len(_TOPICS):  # more topics than word lists: keep titles distinguishable
            category = f"{category} {z // len(_TOPICS) + 1}"
        description = (
            f"{'An' if adj[0] in 'AEIOU' else 'A'} {adj.lower()} {noun.lower()} from {brand} "
            f"for your {category.lower()} routine. "
            f"{str(rng.choice(adjectives))} formula, item {i}."
        )
        items.append(
            {
                "title": title,
                "brand": brand,
                "categories": [["Beauty", category, noun]],
                "description": description,
                "price": round(float(rng.uniform(3, 60)), 2),
            }
        )
    return items


class _Model:
    """The planted generative process (see module docstring)."""

    def __init__(
        self,
        num_items: int,
        num_topics: int,
        rng: np.random.Generator,
        stay=0.65,
        chain=0.6,
        alpha=0.3,
    ):
        self.num_items, self.num_topics = num_items, num_topics
        self.stay, self.chain, self.alpha = stay, chain, alpha
        self.item_topic = rng.permutation(np.arange(num_items) % num_topics)
        pop = np.zeros(num_items)
        self.successors = np.zeros((num_items, 3), dtype=np.int64)
        for z in range(num_topics):
            members = rng.permutation(np.flatnonzero(self.item_topic == z))
            ranks = np.arange(1, len(members) + 1)
            zipf = ranks**-0.8 / (ranks**-0.8).sum()
            pop[members] = 0.7 * zipf + 0.3 / len(members)
            ahead = (np.arange(len(members))[:, None] + np.arange(1, 4)) % len(members)
            self.successors[members] = members[ahead]  # the next 3 items of the cycle
        self.pop = pop  # normalised within each topic

    def next_distribution(self, theta: np.ndarray, last: int, seen: np.ndarray) -> np.ndarray:
        """[num_items] P(next item | theta_u, last item, seen items)."""
        z = self.item_topic[last]
        p_topic = (1 - self.stay) * theta
        p_topic[z] += self.stay
        p = p_topic[self.item_topic] * self.pop
        p *= np.where(self.item_topic == z, 1 - self.chain, 1.0)
        np.add.at(p, self.successors[last], p_topic[z] * self.chain * np.array([0.5, 0.3, 0.2]))
        p[seen] = 0.0
        return p / p.sum()

    def first_distribution(self, theta: np.ndarray) -> np.ndarray:
        return theta[self.item_topic] * self.pop / (theta[self.item_topic] * self.pop).sum()


def generate(
    out_dir: str,
    num_users: int = 2000,
    num_items: int = 1000,
    num_topics: int = 20,
    mean_length: float = 12.0,
    max_length: int = 50,
    seed: int = 0,
    sampler: str = "auto",
) -> dict:
    """Write the synthetic raw files and ground truth to `out_dir`; returns a summary.

    `sampler`: "exact" (this module: each step's distribution over the whole catalogue, the
    ground truth of every user), "vectorised" (`jaxrec.data.synthetic_scale`: the same process
    drawn for blocks of users at once, streamed to disk, ground truth for a sample of users) or
    "auto": exact up to `EXACT_MAX_COST` users x items, vectorised beyond. The same arguments
    give the same files.
    """
    if num_items < 4 * num_topics or num_users < 10:
        raise ValueError("need at least 4 items per topic and 10 users")
    if sampler not in ("auto", "exact", "vectorised"):
        raise ValueError(f"sampler must be auto, exact or vectorised, got {sampler!r}")
    if sampler == "vectorised" or (sampler == "auto" and num_users * num_items > EXACT_MAX_COST):
        from jaxrec.data.synthetic_scale import generate_at_scale

        summary = generate_at_scale(out_dir, num_users, num_items, num_topics, mean_length,
                                    max_length, seed)  # fmt: skip
        log.info("synthetic data in %s: %s", out_dir, summary)
        return summary
    t0 = time.time()
    rng = np.random.default_rng(seed)
    model = _Model(num_items, num_topics, rng)
    asins = [f"S{k:09d}" for k in rng.permutation(num_items)]
    user_ids = [f"U{k:08d}" for k in rng.permutation(10 * num_users)[:num_users]]
    texts = _item_texts(rng, model.item_topic, num_topics)

    sequences, ratings, times, thetas, truth = [], [], [], [], {}
    for u in range(num_users):
        theta = rng.dirichlet(np.full(num_topics, model.alpha))
        length = int(min(max_length, 5 + rng.poisson(max(mean_length - 5, 0))))
        seq = [int(rng.choice(num_items, p=model.first_distribution(theta)))]
        dist = None
        while len(seq) < length:
            dist = model.next_distribution(theta, seq[-1], np.array(seq))
            seq.append(int(rng.choice(num_items, p=dist)))
        affinity = np.log(theta[model.item_topic[seq]] * num_topics + 1e-9)
        r = np.clip(np.round(3.2 + 0.7 * affinity + rng.normal(0, 0.7, len(seq))), 1, 5)
        start = int(rng.integers(1_262_304_000, 1_388_534_400))  # 2010 .. 2014
        gaps = rng.integers(0, 40, len(seq)) * 86_400
        gaps[rng.random(len(seq)) < 0.1] = 0  # same-day ties: order must come from the file
        gaps[0] = 0
        sequences.append(seq)
        ratings.append(r)
        times.append(start + np.cumsum(gaps))
        thetas.append(theta)
        top = np.argsort(-dist, kind="stable")[:TOP_N_STORED]
        truth[user_ids[u]] = {
            "history": [asins[i] for i in seq[:-1]],
            "target": asins[seq[-1]],
            "next_item_distribution": [[asins[i], float(dist[i])] for i in top if dist[i] > 0],
        }

    os.makedirs(out_dir, exist_ok=True)
    _write_reviews(
        os.path.join(out_dir, REVIEWS_FILE), rng, user_ids, asins, texts, sequences, ratings, times
    )
    with _gzip_text(os.path.join(out_dir, META_FILE)) as f:
        for i in np.argsort(asins):  # Amazon meta files are sorted by asin
            f.write(repr({"asin": asins[i], **texts[i]}) + "\n")
    with open(os.path.join(out_dir, GROUND_TRUTH_FILE), "w", encoding="utf-8") as f:
        json.dump(truth, f)
    params = {
        "seed": seed,
        "num_users": num_users,
        "num_items": num_items,
        "num_topics": num_topics,
        "mean_length": mean_length,
        "max_length": max_length,
        "stay": model.stay,
        "chain": model.chain,
        "alpha": model.alpha,
        "item_topic": {asins[i]: int(z) for i, z in enumerate(model.item_topic)},
        "user_theta": {user_ids[u]: np.round(t, 6).tolist() for u, t in enumerate(thetas)},
    }
    with open(os.path.join(out_dir, MODEL_FILE), "w", encoding="utf-8") as f:
        json.dump(params, f)
    summary = {
        "users": num_users,
        "items": num_items,
        "interactions": int(sum(len(s) for s in sequences)),
        "topics": num_topics,
        "oracle_expected": expected_oracle_metrics(truth.values()),
        "seconds": round(time.time() - t0, 2),
    }
    log.info("synthetic data in %s: %s", out_dir, summary)
    return summary


def _gzip_text(path: str, compresslevel: int = 9) -> io.TextIOWrapper:
    """A gzip text file with a zero header timestamp: the same seed gives the same bytes."""
    raw = gzip.GzipFile(path, "wb", compresslevel=compresslevel, mtime=0)
    return io.TextIOWrapper(raw, encoding="utf-8")


def _write_reviews(path, rng, user_ids, asins, texts, sequences, ratings, times):
    """Reviews interleaved across users (a random merge that keeps each user's order)."""
    owners = np.concatenate([np.full(len(s), u) for u, s in enumerate(sequences)])
    rng.shuffle(owners)
    cursor = np.zeros(len(sequences), dtype=np.int64)
    with _gzip_text(path) as f:
        for u in owners.tolist():
            k = cursor[u]
            cursor[u] += 1
            item, ts = sequences[u][k], int(times[u][k])
            rating = float(ratings[u][k])
            f.write(
                repr(
                    {
                        "reviewerID": user_ids[u],
                        "asin": asins[item],
                        "reviewerName": f"Reviewer {user_ids[u][-4:]}",
                        "helpful": [0, 0],
                        "reviewText": f"{texts[item]['title']}: rated {int(rating)} of 5.",
                        "overall": rating,
                        "summary": ["Not for me", "Meh", "Okay", "Good", "Love it"][
                            int(rating) - 1
                        ],
                        "unixReviewTime": ts,
                        "reviewTime": datetime.datetime.fromtimestamp(
                            ts, datetime.timezone.utc
                        ).strftime("%m %d, %Y"),
                    }
                )
                + "\n"
            )


def raw_paths(synth_dir: str) -> tuple[str, str]:
    """(reviews, meta) paths of a directory written by `generate`."""
    paths = (os.path.join(synth_dir, REVIEWS_FILE), os.path.join(synth_dir, META_FILE))
    for p in paths:
        if not os.path.exists(p):
            raise DataError(f"{p}: missing; is {synth_dir} a `jaxrec data synth` directory?")
    return paths


def expected_oracle_metrics(truth_records) -> dict[str, float]:
    """Expected Recall@K / NDCG@K of ranking by the true distribution (top-K mass)."""
    recall = {k: 0.0 for k in METRIC_KS}
    ndcg = {k: 0.0 for k in METRIC_KS}
    n = 0
    for rec in truth_records:
        probs = np.array([p for _, p in rec["next_item_distribution"]])
        discounts = 1.0 / np.log2(np.arange(2, len(probs) + 2))
        for k in METRIC_KS:
            recall[k] += probs[:k].sum()
            ndcg[k] += (probs[:k] * discounts[:k]).sum()
        n += 1
    out = {f"recall@{k}": float(recall[k] / n) for k in METRIC_KS}
    out.update({f"ndcg@{k}": float(ndcg[k] / n) for k in METRIC_KS})
    return out


def oracle_for_dataset(synth_dir: str, ds: Dataset) -> dict:
    """Oracle test metrics for a dataset prepared from `synth_dir`.

    Returns the expected metrics and the realised ones (rank of the actual test target in the
    true distribution), over users whose prepared sequence is exactly the generated one (the
    5-core filter may have changed a few; they are counted in `users_skipped`).
    """
    path = os.path.join(synth_dir, GROUND_TRUTH_FILE)
    if not os.path.exists(path):
        raise DataError(f"{path}: missing ground truth")
    with open(path, encoding="utf-8") as f:
        truth = json.load(f)
    used, skipped, no_truth = [], 0, 0
    hits = {k: 0.0 for k in METRIC_KS}
    gains = {k: 0.0 for k in METRIC_KS}
    for u, seq in enumerate(ds.sequences):
        rec = truth.get(ds.users[u])
        if rec is None:  # the vectorised sampler keeps the truth of a sample of users
            no_truth += 1
            continue
        asins = [ds.items[i].original_id for i in seq.tolist()]
        if asins[:-1] != rec["history"] or asins[-1] != rec["target"]:
            skipped += 1
            continue
        used.append(rec)
        ranked = [a for a, _ in rec["next_item_distribution"]]
        if rec["target"] in ranked:
            rank = ranked.index(rec["target"]) + 1
            for k in METRIC_KS:
                if rank <= k:
                    hits[k] += 1
                    gains[k] += float(1.0 / np.log2(rank + 1))
    if not used:
        raise DataError(f"{path}: no prepared user matches the ground truth")
    realised = {f"recall@{k}": hits[k] / len(used) for k in METRIC_KS}
    realised.update({f"ndcg@{k}": gains[k] / len(used) for k in METRIC_KS})
    return {
        "expected": expected_oracle_metrics(used),
        "realised": realised,
        "users": len(used),
        "users_skipped": skipped,
        **({"users_without_truth": no_truth} if no_truth else {}),
    }
