"""Generator: decode any point of the latent space, every step between two galaxies, a whole grid."""

import streamlit as st

from galaxy_vae import app, generate
from galaxy_vae.captions import error_text, galaxy_caption
from galaxy_vae.errors import GalaxyVAEError
from galaxy_vae.figures import interpolation_path, selected_rows
from galaxy_vae.raster import gif_bytes, grid_png, mark_map, png_bytes

state = st.session_state
KEEP = dict(persist_state="session")  # page widgets keep their values across page switches
URL = dict(KEEP, bind="query-params")  # ... and these live in the URL: a copied link reproduces the view


def _choose(how) -> None:
    """Set the pair to ``how()``; an id or a class that does not work is reported and the pair kept."""
    try:
        (a, b), error = how(), None
    except GalaxyVAEError as exc:
        (a, b), error = state.gen_pair, error_text(exc)
    state.update(gen_pair=(a, b), gen_id_a=str(data.ids[a]), gen_id_b=str(data.ids[b]), gen_error=error)


def _on_click() -> None:
    pair, state.gen_click_sets = generate.pair_after_click(
        state.gen_pair, selected_rows(state.gen_path_map.selection), state.gen_click_sets)
    _choose(lambda: pair)


@st.fragment
@app.guarded
def free_decoding() -> None:
    c = st.columns(2)
    x, y = (c[i].slider(axes[i], spec["lo"][i], spec["hi"][i], step=spec["step"][i], format=spec["format"][i],
                        key=f"gen_z{i + 1}", **URL) for i in range(2))
    details = None
    if cat.has_detail:
        mode, seed = app.detail_controls(URL)
        details = generate.point_details(cat, (x, y), mode, seed, state.get("gen_anchor"))
    point, c = generate.map_point(cat, (x, y), details), st.columns([1, 1, 1.4])
    where = f"({spec['format'][0] % x}, {spec['format'][1] % y})"
    image, nearest = app.decoded_beside_nearest(session, point, f"Decoded at {where}", c)
    c[0].download_button("Decoded image (PNG)", image, file_name="decoded.png", mime="image/png",
                         key="gen_download_point", on_click="ignore")
    base, extent = session.raster_map()  # every galaxy, drawn once; only the marks change
    c[2].image(png_bytes(mark_map(base, extent, point.xy[0], cat.map_xy[nearest])), output_format="PNG",
               caption="The decoded point (+) and its nearest galaxy (o) on the map")


@st.fragment
@app.guarded
def step_at_t(a: int, b: int, method: str) -> None:
    t = st.slider("t (0 = galaxy A, 1 = galaxy B)", 0.0, 1.0, step=0.01, key="gen_t", **URL)
    app.decoded_beside_nearest(session, generate.path_between(cat, a, b, [t], method), f"Decoded at t = {t:.2f}",
                               st.columns(2))


session = app.session()
st.title("Generator")
st.caption("Move through the model's latent space and see what it decodes: any point, any step between two "
           "galaxies, or a grid over the whole map. Each decoded galaxy is shown beside the nearest real one.")
cat, data, axes = session.catalogue, session.data, session.catalogue.axis_names
spec = generate.slider_range(cat.map_xy)
if state.get("gen_for") != (session.data_key, session.ckpt_key):  # a new catalogue (or a link): start afresh
    linked, state.gen_notes = ({}, []) if "gen_for" in state else generate.read_link(st.query_params, spec, data.ids)
    for key in set(generate.LINK_KEYS) & set(st.query_params) - set(linked):
        del st.query_params[key]  # a bad value leaves the URL; the note says what is used instead
    z = (linked.get("gen_z1", spec["start"][0]), linked.get("gen_z2", spec["start"][1]))
    state.update(gen_for=(session.data_key, session.ckpt_key), gen_z1=z[0], gen_z2=z[1], gen_anchor=z,
                 gen_t=linked.get("gen_t", 0.5), **{k: linked[k] for k in ("gen_detail_mode", "gen_detail_seed")
                                                    if k in linked})
    pair = (linked["gen_id_a"], linked["gen_id_b"]) if {"gen_id_a", "gen_id_b"} <= set(linked) else None
    _choose((lambda: pair) if pair else
            (lambda: generate.random_pair(data.labels, 0, min(1, len(data.class_names) - 1), seed=0)))
for note in state.gen_notes:
    st.warning(note)
free_tab, path_tab, grid_tab = st.tabs(["Free decoding", "Interpolation", "Manifold grid"])
with free_tab:
    if axes[0] != "z₁":
        st.caption(f"{cat.vectors.shape[1]}-D latent: the sliders move along its two principal directions.")
    if cat.has_detail:
        st.caption(f"The sliders move over the map; a {cat.model.detail_dim}-D detail code carries what two numbers "
                   "cannot (orientation, elongation, colour, companions), drawn from what the model learned "
                   "galaxies at each map point look like.")
    free_decoding()
with path_tab:
    c, classes = st.columns([3, 3, 2]), list(range(len(data.class_names)))
    by_id = lambda: tuple(generate.find_row(data.ids, state[k]) for k in ("gen_id_a", "gen_id_b"))
    for i, end in enumerate("AB"):
        c[i].text_input(f"Galaxy {end} (id)", key=f"gen_id_{end.lower()}", on_change=_choose, args=(by_id,), **URL)
    c[2].radio("A click on the map sets galaxy", ["A", "B"], horizontal=True, key="gen_click_sets", **KEEP)
    c = st.columns([3, 3, 1, 1], vertical_alignment="bottom")
    for i, end in enumerate("AB"):
        c[i].selectbox(f"Random {end} from", classes, index=min(i, len(classes) - 1), key=f"gen_class_{end.lower()}",
                       format_func=data.class_names.__getitem__, **KEEP)
    c[2].number_input("Seed", 0, 2**31 - 1, key="gen_seed", **KEEP)
    c[3].button("Random pair", key="gen_random", on_click=_choose, args=(lambda: generate.random_pair(
        data.labels, state.gen_class_a, state.gen_class_b, int(state.gen_seed), data.class_names),))
    if state.gen_error:
        st.error(state.gen_error)
    c = st.columns(2)
    method = c[0].radio("Interpolation", ["linear", "spherical"], horizontal=True, key="gen_method", **KEEP,
                        help="Spherical turns the direction at constant speed while the length changes linearly.")
    n_frames = c[1].slider("Frames in the strip", 2, 12, 6, key="gen_frames", **KEEP)
    (a, b), ts = state.gen_pair, generate.frame_ts(n_frames)
    path = generate.path_between(cat, a, b, ts, method)
    frames = path.decode(cat)
    rows, distances = generate.nearest_real(session.similarity, cat, path, frames)
    left, right = st.columns([3, 2])
    left.plotly_chart(interpolation_path(cat.map_xy, data.labels, data.class_names, path.xy, cat.map_xy[rows],
                                         axis_names=axes), key="gen_path_map", on_select=_on_click,
                      selection_mode="points")
    with right:
        step_at_t(a, b, method)
    st.text(f"{galaxy_caption(data, a)} → {galaxy_caption(data, b)}, {method}: {n_frames} decoded steps"
            + (" (map point and details both interpolated)" if cat.has_detail else "")
            + f", then the nearest real galaxy to each ({session.similarity.name})")
    app.gallery(frames, [f"t = {t:.2f}" for t in ts], columns=n_frames, scale=max(1, 128 // frames.shape[1]))
    app.catalogue_gallery(session, rows, [galaxy_caption(data, r, d) for r, d in zip(rows, distances)],
                          columns=n_frames)
    c = st.columns(2)
    c[0].download_button("Strip (PNG)", lambda: grid_png(frames, 2, len(frames), gap=2),
                         file_name="interpolation.png", mime="image/png", key="gen_download_strip", on_click="ignore")
    c[1].download_button("Animation (GIF)", lambda: gif_bytes(frames), file_name="interpolation.gif",
                         mime="image/gif", key="gen_download_gif", on_click="ignore")
with grid_tab:
    n = st.slider("Grid size (n x n)", 3, 20, 8, key="gen_grid_n", **KEEP)
    grid, extent, shown = session.manifold(n)
    st.image(shown, output_format="PNG", caption=f"Decoded on an {n} x {n} grid: {axes[0]} {extent[0]:.3g} → "
             f"{extent[1]:.3g} rightwards, {axes[1]} {extent[2]:.3g} → {extent[3]:.3g} upwards"
             + (", each point with its typical details (the prior's mean)" if cat.has_detail else ""))
    st.download_button("Grid (PNG)", lambda: png_bytes(grid), file_name="manifold.png", mime="image/png",
                       key="gen_download_grid", on_click="ignore")
