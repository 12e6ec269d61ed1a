"""The demo page (Gradio): a photo and words in; overlay, segment table and downloads out.

Layout only; everything it does is :meth:`vocabseg.demo.session.DemoSession.segment`.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from vocabseg.demo.examples import PHOTOS, example_photos
from vocabseg.demo.session import MODES, TABLE_HEADERS, DemoSession, ModelChoice
from vocabseg.errors import ConfigError

TYPE_YOUR_OWN = "(type your own)"
INTRO = ("# vocabseg: open-vocabulary segmentation\n"
         "Upload a photo (or pick an example), name what to find — classes separated by `;`, synonyms by `,`, "
         "`[stuff]` after a class for amorphous regions — or pick a built-in vocabulary, then **Segment**.")


def _gradio() -> Any:
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no calls home from a local demo
    try:
        import gradio
    except ImportError:
        raise ConfigError("the demo needs the [demo] extra: pip install 'vocabseg[demo]'") from None
    return gradio


def build_demo(session: DemoSession, *, examples_dir: str | Path | None = None) -> Any:
    """The page as a ``gradio.Blocks`` (call ``.launch()`` on it)."""
    from vocabseg.text import list_vocabularies

    gr = _gradio()
    labels = list(session.sources)
    opening, choice = session.opening()  # a model that loads and its own task: the first click works
    with gr.Blocks(title="vocabseg demo", analytics_enabled=False) as demo:
        gr.Markdown(INTRO)
        with gr.Row():
            with gr.Column():
                image = gr.Image(label="photo", type="numpy", sources=["upload", "clipboard"], elem_id="photo")
                photos = example_photos(examples_dir or session.output_root / "examples")
                vocab = gr.Textbox(label="vocabulary", placeholder="cat; dog; grass [stuff]", lines=2,
                                   elem_id="vocabulary")
                if photos:  # each with words to try on it
                    gr.Examples([[str(p), PHOTOS[p.stem]] for p in photos], inputs=[image, vocab],
                                label="example photos (scikit-image)")
                builtin = gr.Dropdown([TYPE_YOUR_OWN, *list_vocabularies()], value=TYPE_YOUR_OWN,
                                      label="or a built-in vocabulary", elem_id="builtin")
                model = gr.Dropdown(labels, value=opening, label="model", elem_id="model")
                task = gr.Radio(task_choices(choice), value=choice.task, label="task", elem_id="task")
                mode_label = f"mode ({_fast_mode_note(session.device)}; slightly different numbers)"
                mode = gr.Radio(list(MODES), value="exact", label=mode_label, elem_id="mode")
                run = gr.Button("Segment", variant="primary", elem_id="run")
            with gr.Column():
                status = gr.Markdown(choice.message, elem_id="status")
                result = gr.Image(label="segmentation", type="numpy", interactive=False, elem_id="result")
                table = gr.Dataframe(headers=TABLE_HEADERS, label="segments", interactive=False, elem_id="segments")
                files = gr.File(label="downloads", file_count="multiple", interactive=False, elem_id="downloads")

        builtin.change(lambda name: gr.update() if name == TYPE_YOUR_OWN else name, builtin, vocab)

        def pick(label):  # the task resets to one the model gives; the status says whether it is ready
            picked = session.choose(label)
            return gr.update(choices=task_choices(picked), value=picked.task), picked.message

        model.change(pick, model, [task, status])

        tracker = gr.Progress(track_tqdm=True)  # Gradio finds it as a default argument; it also shows tqdm bars

        def segment(photo, words, label, chosen_task, chosen_mode, progress=tracker):
            out = session.segment(photo, words, label, chosen_task, chosen_mode,
                                  progress=lambda fraction, text: progress(fraction, desc=text))
            rows = out.rows or None
            return out.overlay, gr.update(value=rows, headers=TABLE_HEADERS), out.files or None, out.message

        run.click(segment, [image, vocab, model, task, mode], [result, table, files, status])
    return demo


def _fast_mode_note(device: str) -> str:
    """What fast mode runs on this page's device: "fast: bf16 recipe, native bf16 on this CPU (...)"."""

    from vocabseg.precision import choose_recipe
    from vocabseg.predictor import resolve_device

    return choose_recipe("fast", resolve_device(device)).describe()


def task_choices(choice: ModelChoice) -> list[str]:
    """The task picker's entries for a model: its tasks, and "all" where it gives several."""
    return [*choice.tasks, "all"] if len(choice.tasks) > 1 else list(choice.tasks)


def launch(session: DemoSession, *, host: str = "127.0.0.1", port: int | None = None, share: bool = False,
           block: bool = True) -> Any:
    """Builds and serves the page; ``block=False`` returns at once (tests, notebooks) with the app running."""
    demo = build_demo(session)
    demo.queue(default_concurrency_limit=1)  # one model run at a time: the CPU is the bottleneck
    demo.launch(server_name=host, server_port=port, share=share, prevent_thread_lock=not block, quiet=not block,
                allowed_paths=[str(session.output_root)], show_error=False)
    return demo
