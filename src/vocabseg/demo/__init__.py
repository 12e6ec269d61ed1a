"""``vocabseg demo``: a web page to try a model on a photo with any words (the ``[demo]`` extra, Gradio)."""
from vocabseg.demo.session import DemoResult, DemoSession, ModelSource

__all__ = ["DemoResult", "DemoSession", "ModelSource", "build_demo", "launch"]


def __getattr__(name: str):
    # Gradio is imported only when the page is built: the session works (and is tested) without it.
    if name in ("build_demo", "launch"):
        from vocabseg.demo import app

        return getattr(app, name)
    raise AttributeError(name)
