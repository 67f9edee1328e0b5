"""Leave-one-out is held out everywhere: a model that copies corrections gains nothing from them."""

from __future__ import annotations

from typing import Any

from models.base import Generation, RenderedPrompt, Sample, Usage
from nodes.loo import leave_one_out
from nodes.reflect import Reflector
from nodes.route import measure_loo_icl
from nodes.select import Sampling, measure_dg_diff
from prompts.compact import correction_note
from tests.nodes.conftest import ScriptedBackend


class Copier(ScriptedBackend):
    """Answers a query by copying a line of its prompt that has the same input, else ``0000``.

    With a held-out demonstration's own correction in its prompt, it is always right: exactly the
    leak a held-out measurement must not have.
    """

    def generate(self, prompt: RenderedPrompt, *, n: int = 1, **kwargs: Any) -> Generation:
        self.prompts.append(prompt)
        lines = (prompt.text or "").split("\n")
        query = lines[-1]
        copied = [line[len(query) :] for line in lines[:-1] if line.startswith(query)]
        text = (copied[-1] if copied else "0000") + "\n"
        return Generation(samples=[Sample(text=text, logprob=-0.1)] * n, usage=Usage(requests=1))


def test_every_held_out_measurement_leaves_out_the_demos_own_correction(task):
    notes = [correction_note(d.input, d.output, [[0, 0, 0, 0]]) for d in task.train]
    assert [len(h.notes) for h in leave_one_out(task, notes)] == [2, 2, 2]
    assert [h.notes for h in leave_one_out(task, notes, limit=1)] == [notes[1:]]
    # Before #18.3 the router's LOO-ICL kept every note: 1.0 here, so it never escalated.
    loo, _ = measure_loo_icl(Copier(["x"]), task, notes)
    assert loo["acc"] == 0.0 and loo["n"] == 3
    assert Reflector(Copier(["x"])).evaluate(task, notes).accuracy == 0.0
    dg = measure_dg_diff(Copier(["x"]), task, notes=notes, sampling=Sampling(n=2))
    assert dg.gen_acc == 0.0 and dg.select_acc == 0.0
    # the copier does copy: shown as a demonstration, a right output is reproduced
    doubled = task.model_copy(update={"train": task.train * 2})
    assert measure_loo_icl(Copier(["x"]), doubled, [])[0]["acc"] == 1.0
