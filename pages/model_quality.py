"""Models & quality: how the selected checkpoint was trained, what it reconstructs and classifies, and
how well every checkpoint's similarity retrieves galaxies of the same class (held-out figures)."""

import pandas as pd
import streamlit as st

from galaxy_vae import app
from galaxy_vae.captions import error_text, esc
from galaxy_vae.errors import GalaxyVAEError
from galaxy_vae.figures import confusion_matrix_figure, loss_curves
from galaxy_vae.models import count_parameters
from galaxy_vae.quality import METRICS, loss_history, training_summary
from galaxy_vae.symmetry import chirality_pairs

PER_CLASS = 3  # validation galaxies shown per class
NUMBER = st.column_config.NumberColumn
LABELS = {"precision_at_10": "precision@10", "macro_precision_at_10": "macro precision@10",
          "precision_at_10_morph": "precision@10 morph", "macro_precision_at_10_morph": "macro precision@10 morph"}

session = app.session()
st.title("Models & quality")
ckpt, data = session.checkpoint, session.data
meta, model = ckpt.meta, ckpt.model
st.caption(f"`{ckpt.path.name}`: {type(model).__name__}, {model.latent_dim}-D latent, "
           f"{count_parameters(model):,} parameters. Every figure below is computed on galaxies the "
           "model never saw in training (its validation split); nothing here retrains anything.")

st.header("How it was trained")
if meta.get("command"):
    st.code(meta["command"], language="bash", wrap_lines=True)
else:
    st.info("This checkpoint does not record the command that trained it.")
with st.expander("Training configuration and metadata"):
    st.json(training_summary(meta))
st.plotly_chart(loss_curves(loss_history(meta.get("history"))), key="loss_curves")
st.caption("Loss terms per epoch: training (solid) and validation (dashed). recon: squared error summed over "
           "pixels; kl: divergence from the prior; class: the class head's weighted cross-entropy.")

try:
    examples, cm = session.validation_examples(PER_CLASS), session.confusion()
except GalaxyVAEError as exc:  # a checkpoint trained on other classes than this dataset's
    st.error(error_text(exc))
    st.stop()

st.header("Reconstructions")
st.caption(f"{PER_CLASS} validation galaxies of each class (64×64 crop) beside the model's reconstruction.")
for ex in examples:
    st.subheader(esc(ex.class_name))
    if not ex.ids:
        st.caption("No validation galaxies of this class.")
        continue
    images, captions = ex.interleaved()
    app.gallery(images, [esc(c) for c in captions], columns=2 * PER_CLASS)

st.header("Class head on the validation split")
if cm is None:
    st.info(f"{type(model).__name__} has no classifier head (it learns to reconstruct only), so it has no "
            "confusion matrix; its latent space is still judged by retrieval below.")
else:
    st.plotly_chart(confusion_matrix_figure(cm, data.class_names), key="confusion")
    st.caption("Rows: true class; columns: the class the head reads from the latent. Colour: share of the row.")

st.header("Retrieval quality of every checkpoint")
rows, problems = session.quality_table()
counts = data.counts()
largest = max(counts, key=counts.get)
names = [esc(n) for n in data.class_names]
pairs = [f"{names[a]} and {names[b]}" for a, b in chirality_pairs(data.class_names)]
st.markdown(
    f"Precision@10: the share of a validation galaxy's 10 nearest training galaxies that share its class. "
    f"{esc(largest)} is {counts[largest] / len(data):.0%} of {esc(data.name)}, so plain precision mostly measures "
    f"{esc(largest)} galaxies; **macro** precision averages per class first, and is the figure that tells "
    "models apart.")
st.markdown(f"The *morph* figures count {' and '.join(pairs)} as one class: one morphology seen in a mirror."
            if pairs else "This dataset has no mirror-image classes, so the *morph* figures equal the strict ones.")
st.caption("recon_mse: mean squared error at 64×64, pixel values in [0, 1]. "
           "The pixel baseline searches the raw 64×64 crops with the same neighbours and split.")
st.dataframe(pd.DataFrame(rows).set_index("checkpoint"), key="quality_table",
             column_config={**{m: NUMBER(LABELS.get(m, m), format="%.3f") for m in METRICS},
                            "recon_mse": NUMBER("recon MSE", format="%.5f"),
                            "latent_dim": NUMBER("latent dim"), "n_val": NUMBER("validation galaxies")})
for problem in problems:
    st.warning(esc(problem))

st.header("Robustness to framing")
st.markdown(
    "Uploads are rarely framed like the catalogue. Here every checkpoint's validation galaxies are re-cut from "
    "their raw 423 px frames as a user's own cutout might be — a field of view of 50 to 423 px instead of the "
    "catalogue's 207, a brighter stretched sky (+20, ×1.3), a random rotation — prepared as the app prepares an "
    "upload (sky matched to the catalogue's, no automatic framing), and searched among the standard-framed "
    "training galaxies. Each figure is macro precision@10, six classes kept apart; the ratio to *standard* says "
    "how much of a similarity's quality survives the change.")
measured = session.robustness_table(st.button("Measure framing robustness", key="measure_robustness"))
if measured is None:
    st.info("Press *Measure framing robustness* to compute the table (about a minute, then kept for this server); "
            "`python -m galaxy_vae evaluate --robustness` gives the same figures in a shell.")
else:
    rows, problems = measured
    if rows:
        table = pd.DataFrame(rows).set_index("checkpoint")
        variants = [c for c in table.columns if c != "n_val"]
        st.dataframe(table, key="robustness_table",
                     column_config={**{v: NUMBER(v, format="%.3f") for v in variants},
                                    "n_val": NUMBER("validation galaxies")})
        st.caption("The same figures as a share of each row's *standard* figure:")
        st.dataframe(table[variants].div(table["standard"], axis=0), key="robustness_ratios",
                     column_config={v: NUMBER(v, format="%.2f×") for v in variants})
    for problem in problems:
        st.warning(esc(problem))

st.header("Realism: do its galaxies look like galaxies?")
st.markdown(
    "statmorph's non-parametric morphology — Gini, M20, concentration, asymmetry, smoothness — of this checkpoint's "
    "validation galaxies, of their reconstructions and of *samples*: the map points of real galaxies decoded with "
    "details drawn from the model's prior (models without a detail code: the decoded point). Decoded images get "
    "real-level sky noise first. Each figure is the 1-D Wasserstein distance W1 to real galaxies; two disjoint "
    "halves of the real set give the baseline.")
app.realism_panel(session)
