"""The Milky Way challenge: which catalogue galaxy is most like a query, and new galaxies like it.

    query cutout (69, 69, 3) --rank_all--> Ranking: the nearest galaxies under each Similarity
                               (a model latent, its rotation/flip-invariant mode, the 64-D seed
                                autoencoder, raw pixels), each to depth POOL
                             --choose_answer--> Answer (one galaxy, and why) ; agreement(k)
    query cutout --posterior--> (mu, sigma) --sample_latents(T, n, seed)--> z (n, d)
                 --Catalogue.decode / index.query / classifier head--> Lookalikes

The answer rule. Similarities measure different things and none is trusted over the others, so the
default answer is the *consensus*: every galaxy gets its rank (1 = nearest) under each similarity,
counted to depth POOL; a galaxy beyond POOL counts POOL + 1; the galaxy with the smallest sum wins
(ties: better rank under the first similarity, then lower row). A galaxy that several unrelated
similarities all place high beats one that a single similarity loves and the others ignore.
``by=<similarity key>`` instead takes that similarity's own nearest galaxy.

Temperature. Lookalikes are drawn from the query's posterior N(mu, diag(sigma^2)) truncated to the
ellipsoid of radius T in posterior standard deviations:

    z = mu + sigma * e,   e ~ N(0, I_d) conditioned on |e| <= T

so every sample satisfies |(z - mu) / sigma| <= T exactly; T = 0 gives the mean n times, and a large
T gives the plain posterior. ``e`` is drawn exactly for any d: a uniform direction times a radius
from the chi distribution with d degrees of freedom truncated at T (inverse CDF), no rejection.

Variety (models with a detail code). The detail posterior of one picture is narrow (its details
are well determined), so details drawn from it alone decode to near-identical galaxies. The details
are therefore drawn around the query's own, with the spread that real galaxies have at each
sampled map point, taken from the learned prior p(d | z):

    d = mu_q + s * e,   s^2 = sigma_q^2 + (V * sigma_p(z))^2,   e ~ N(0, I_D), |e| <= R(T)

V = 0 is the query's posterior alone; V = 1 (the default) keeps the query's typical details (its
orientation, colour and size, on average) and varies them as much as the galaxies near the sampled
map point vary. :func:`diversity` measures the result against the query's real neighbours.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from scipy.special import gammainc, gammaincinv

from galaxy_vae.catalogue import Catalogue, Similarity
from galaxy_vae.configs import SIMILARITY_NAMES
from galaxy_vae.data import CROP, GalaxyData, model_view
from galaxy_vae.embed import encode_both_dist_images, encode_dist_images, has_detail
from galaxy_vae.errors import CheckpointError
from galaxy_vae.paths import dense_ae_checkpoint, encoder_checkpoint
from galaxy_vae.search import Neighbours, neighbour_table

POOL = 100  # ranks counted per similarity for the consensus answer (whatever k is shown)
CONSENSUS = "consensus"
CONSENSUS_LABEL = "Consensus of all similarities (best summed rank)"
DEFAULT_TEMPERATURE = 2.0  # |e| <= 2: 86 % of a 2-D posterior's mass, its tails cut
DEFAULT_SAMPLES = 16  # lookalikes drawn by default (a 4 x 4 grid), on the page and in the CLI
DEFAULT_VARIETY = 1.0  # details vary as much as galaxies at the sampled map point do (see sample_lookalikes)


# --- the ranking --------------------------------------------------------------------------------



def similarity_files(checkpoint: Path) -> dict[str, Path | None]:
    """The similarities on offer with the selected model ``checkpoint``, in the order of
    SIMILARITY_NAMES (the first is the default): key -> the checkpoint whose space it searches
    (None: raw pixels). The galaxy encoder and the seed autoencoder join when their files exist."""
    dense = dense_ae_checkpoint()
    files = {"encoder": encoder_checkpoint(), "latent": checkpoint, "invariant": checkpoint, "pixels": None,
             "dense_ae": dense if dense and dense.resolve() != Path(checkpoint).resolve() else None}
    return {key: files[key] for key in SIMILARITY_NAMES if key == "pixels" or files[key]}


def make_similarity(key: str, catalogue: Catalogue) -> Similarity:
    """The similarity ``key`` (a key of SIMILARITY_NAMES) over ``catalogue``'s space."""
    invariant = key == "invariant"
    label = catalogue.space.label + (", any rotation or mirror image" if invariant else "")
    return Similarity(key, SIMILARITY_NAMES[key], label, catalogue, invariant)


def similarities(model: Catalogue, pixels: Catalogue | None = None, dense: Catalogue | None = None,
                 encoder: Catalogue | None = None) -> list[Similarity]:
    """The similarities available, in the order of SIMILARITY_NAMES (the first is the default):
    the similarity encoder, the model's latent, the 64-D autoencoder's, the invariant mode of the
    model, the pixel baseline."""
    spaces = {"encoder": encoder, "latent": model, "dense_ae": dense, "invariant": model, "pixels": pixels}
    return [make_similarity(key, cat) for key, cat in spaces.items() if cat is not None]


@dataclass(frozen=True)
class Ranking:
    """The nearest catalogue galaxies of one query under each similarity, nearest first."""

    keys: tuple[str, ...]
    labels: tuple[str, ...]
    indices: np.ndarray  # (S, depth) int64 catalogue rows
    distances: np.ndarray  # (S, depth) float64, in each similarity's own units

    def top(self, key: str, k: int) -> Neighbours:
        """The first k of similarity ``key`` as a one-query Neighbours (for neighbour_table)."""
        s = self.keys.index(key)
        return Neighbours(self.distances[s:s + 1, :k], self.indices[s:s + 1, :k])


def rank_all(image: np.ndarray, sims: Sequence[Similarity], depth: int = POOL) -> Ranking:
    """Rank the catalogue for one cutout (69, 69, 3) under every similarity, to ``depth``."""
    found = [sim.catalogue.query_images(image, depth, invariant=sim.invariant) for sim in sims]
    depth = min(f.indices.shape[1] for f in found)  # a catalogue smaller than depth
    return Ranking(tuple(s.key for s in sims), tuple(s.label for s in sims),
                   np.stack([f.indices[0, :depth] for f in found]),
                   np.stack([f.distances[0, :depth] for f in found]))


@dataclass(frozen=True)
class Answer:
    """The galaxy chosen as most alike, and where each similarity ranks it."""

    row: int
    by: str  # CONSENSUS or the key of the similarity whose nearest galaxy it is
    ranks: dict[str, int | None]  # rank under each similarity (1 = nearest); None beyond the depth
    score: int  # summed rank, beyond-depth counted as depth + 1 (what the consensus minimises)


def _rank_table(ranking: Ranking) -> tuple[np.ndarray, np.ndarray]:
    """Candidate rows (C,) and their ranks (S, C), depth + 1 where a similarity did not list them."""
    rows = np.unique(ranking.indices)
    depth = ranking.indices.shape[1]
    ranks = np.full((len(ranking.keys), len(rows)), depth + 1, dtype=np.int64)
    for s, listed in enumerate(ranking.indices):
        ranks[s, np.searchsorted(rows, listed)] = np.arange(1, depth + 1)
    return rows, ranks


def choose_answer(ranking: Ranking, by: str = CONSENSUS) -> Answer:
    """The answer to the challenge: the best summed rank (``by="consensus"``, see the module
    docstring) or the nearest galaxy under one similarity (``by=<key>``)."""
    rows, ranks = _rank_table(ranking)
    total = ranks.sum(axis=0)
    if by == CONSENSUS:
        best = int(np.lexsort((rows, ranks[0], total))[0])  # smallest sum, then first similarity, then row
    elif by in ranking.keys:
        best = int(np.flatnonzero(rows == ranking.indices[ranking.keys.index(by), 0])[0])
    else:
        raise ValueError(f"answer rule must be {CONSENSUS!r} or one of {ranking.keys}, got {by!r}")
    depth = ranking.indices.shape[1]
    listed = {key: (int(r) if r <= depth else None) for key, r in zip(ranking.keys, ranks[:, best])}
    return Answer(int(rows[best]), by, listed, int(total[best]))


def agreement(ranking: Ranking, k: int) -> dict:
    """How far the similarities agree on the top k: pairwise overlap |A & B| / k (S, S), its mean
    over distinct pairs, and the rows every similarity puts in its top k."""
    sets = [set(row[:k].tolist()) for row in ranking.indices]
    k = min(k, ranking.indices.shape[1])
    overlap = np.array([[len(a & b) / k for b in sets] for a in sets])
    pairs = [overlap[i, j] for i in range(len(sets)) for j in range(i + 1, len(sets))]
    return {"overlap": overlap, "mean_overlap": float(np.mean(pairs)) if pairs else 1.0,
            "in_all": sorted(set.intersection(*sets)) if sets else []}


def class_mix(ranking: Ranking, labels: np.ndarray, n_classes: int, k: int) -> np.ndarray:
    """(S, n_classes): the share of each class among each similarity's k nearest galaxies."""
    top = np.asarray(labels)[ranking.indices[:, :k]]  # (S, k) class of each neighbour
    return np.stack([np.bincount(row, minlength=n_classes) / top.shape[1] for row in top])


def ranking_rows(ranking: Ranking, data: GalaxyData, k: int, answer: Answer | None = None) -> list[dict]:
    """The top k of every similarity as CSV-ready rows: similarity, the neighbour_table columns, answer."""
    out = []
    for key, label in zip(ranking.keys, ranking.labels):
        for row in neighbour_table(ranking.top(key, k), data):
            out.append({"similarity": key, "similarity_label": label, **row,
                        "answer": answer is not None and row["index"] == answer.row})
    return out


# --- lookalikes ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Posterior:
    mu: np.ndarray  # (d,) float64
    sigma: np.ndarray  # (d,) float64 standard deviations


def _as_posterior(mu: np.ndarray, logvar: np.ndarray) -> Posterior:
    return Posterior(mu[0].astype(np.float64), np.exp(0.5 * logvar[0].astype(np.float64)))


def posteriors(cat: Catalogue, image: np.ndarray) -> tuple[Posterior, Posterior | None]:
    """The model's posteriors for one cutout (69, 69, 3): of the map latent, and of the detail code
    (None for models without one), from one pass of the encoder; refuses models without a posterior."""
    model = cat.model
    if model is None or not getattr(model, "is_variational", False):
        raise CheckpointError("Cannot sample lookalikes", expected="a variational model (a VAE)",
                              found=f"{cat.space.label}, which has no posterior",
                              fix="Choose the detail VAE, the improved VAE or the seed ConvVAE checkpoint.")
    if not has_detail(model):
        return _as_posterior(*encode_dist_images(model, np.asarray(image)[None])), None
    mu, logvar, mu_d, logvar_d = encode_both_dist_images(model, np.asarray(image)[None])
    return _as_posterior(mu, logvar), _as_posterior(mu_d, logvar_d)


def posterior(cat: Catalogue, image: np.ndarray) -> Posterior:
    """The model's posterior of the map latent for one cutout (69, 69, 3); refuses models without one."""
    return posteriors(cat, image)[0]


def equal_mass_radius(temperature: float, d: int) -> float:
    """The radius in d dimensions holding the same share of a standard normal's mass as radius
    ``temperature`` holds in 2 (the map's): how far the detail code may wander at temperature T."""
    if temperature <= 0:
        return 0.0
    mass = min(gammainc(1.0, temperature ** 2 / 2), 1.0 - 1e-12)
    return float(np.sqrt(2.0 * gammaincinv(d / 2, mass)))


def ball_normal(rng: np.random.Generator, n: int, d: int, radius: float) -> np.ndarray:
    """(n, d) draws of N(0, I_d) conditioned on |e| <= radius (exact, for any d)."""
    if radius < 0 or not math.isfinite(radius):
        raise ValueError(f"temperature must be a finite number >= 0, got {radius}")
    g = rng.standard_normal((n, d))
    norms = np.linalg.norm(g, axis=1, keepdims=True)
    direction = g / np.where(norms > 0, norms, 1.0)  # uniform on the sphere
    # |e|^2 ~ chi^2_d = Gamma(d/2, scale 2): invert its CDF on [0, CDF(radius^2)]
    cap = gammainc(d / 2, radius ** 2 / 2)
    r = np.sqrt(2.0 * gammaincinv(d / 2, rng.random(n) * cap)) if radius > 0 else np.zeros(n)
    return direction * np.minimum(r, radius)[:, None]  # min: rounding never leaves the ball


def sample_latents(post: Posterior, n: int, temperature: float, seed: int) -> np.ndarray:
    """n latents (n, d) float32 from the posterior truncated at ``temperature`` sigmas (module docstring)."""
    if int(n) < 1:
        raise ValueError(f"need at least one sample, got {n}")
    e = ball_normal(np.random.default_rng(int(seed)), int(n), len(post.mu), float(temperature))
    return (post.mu + post.sigma * e).astype(np.float32)


def radii(post: Posterior, latents: np.ndarray) -> np.ndarray:
    """(n,) distance of each latent from mu in posterior standard deviations."""
    return np.linalg.norm((np.asarray(latents, dtype=np.float64) - post.mu) / post.sigma, axis=1)


@torch.inference_mode()
def predict_classes(model, latents: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The classifier head on latents (n, d): predicted class (n,) and its probability (n,)."""
    probs = torch.softmax(model.classify(torch.from_numpy(np.asarray(latents, dtype=np.float32))), dim=1)
    p, label = probs.max(dim=1)
    return label.numpy().astype(np.int64), p.numpy().astype(np.float64)


@dataclass(frozen=True)
class Lookalikes:
    """Galaxies decoded from latents sampled around a query's posterior."""

    posterior: Posterior
    latents: np.ndarray  # (n, d) float32
    images: np.ndarray  # (n, S, S, 3) uint8 at the model's size
    nearest: np.ndarray  # (n,) int64 catalogue row nearest to each latent
    distances: np.ndarray  # (n,) float64 latent distance to it
    predicted: np.ndarray  # (n,) int64 class from the model's classifier head
    probability: np.ndarray  # (n,) float64 its softmax probability
    class_names: tuple[str, ...]  # names of the predicted classes (the checkpoint's own)
    details: np.ndarray | None = None  # (n, D) float32 detail codes (detail VAE), else None
    detail_posterior: Posterior | None = None
    detail_spread: np.ndarray | None = None  # (n, D) float64 s of each draw (module docstring)
    variety: float = DEFAULT_VARIETY


def diversity(images: np.ndarray) -> float:
    """How unlike each other a set of images (n, S, S, 3) uint8 is: the mean over pairs of their
    root-mean-square pixel difference, pixels in [0, 1] (0: n copies of one image)."""
    x = np.asarray(images, dtype=np.float32).reshape(len(images), -1) / 255.0
    if len(x) < 2:
        return 0.0
    sq = (x * x).sum(1)
    d2 = np.maximum(sq[:, None] + sq[None] - 2.0 * (x @ x.T), 0.0) / x.shape[1]
    return float(np.sqrt(d2[np.triu_indices(len(x), 1)]).mean())


def real_view(data: GalaxyData, rows, size: int) -> np.ndarray:
    """Catalogue galaxies ``rows`` as a model of image ``size`` sees them, (n, size, size, 3) uint8,
    to compare with its decoded images."""
    return model_view(data.images[np.sort(np.asarray(rows))], CROP, int(size))


def sample_lookalikes(cat: Catalogue, image: np.ndarray, n: int = 16,
                      temperature: float = DEFAULT_TEMPERATURE, seed: int = 0,
                      variety: float = DEFAULT_VARIETY) -> Lookalikes:
    """Sample, decode and describe n lookalikes of a cutout (69, 69, 3): the page's and CLI's path.

    With a detail code both codes are drawn around the query's posterior: the map latent within
    ``temperature`` sigmas, the details within the radius holding the same share of their mass
    (:func:`equal_mass_radius`) and with the spread ``variety`` sets (module docstring), from one
    seeded stream."""
    if not 0.0 <= float(variety) < float("inf"):
        raise ValueError(f"variety must be a finite number >= 0, got {variety}")
    post, post_d = posteriors(cat, image)
    z = sample_latents(post, n, temperature, seed)
    details = spread = None
    if post_d is not None:
        radius = equal_mass_radius(float(temperature), len(post_d.mu))
        e = ball_normal(np.random.default_rng([int(seed), 1]), int(n), len(post_d.mu), radius)
        with torch.inference_mode():
            prior_sigma = torch.exp(0.5 * cat.model.prior_detail_dist(torch.from_numpy(z))[1]).numpy()
        spread = np.sqrt(post_d.sigma[None] ** 2 + (float(variety) * prior_sigma.astype(np.float64)) ** 2)
        details = (post_d.mu + spread * e).astype(np.float32)
    found = cat.index.query(z, 1)
    predicted, probability = predict_classes(cat.model, z)
    names = tuple(cat.space.checkpoint.meta.get("class_names") or cat.data.class_names)
    return Lookalikes(post, z, cat.decode(z, details), found.indices[:, 0], found.distances[:, 0],
                      predicted, probability, names, details, post_d, spread, float(variety))
