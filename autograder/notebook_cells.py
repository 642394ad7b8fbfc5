"""Running the merged notebook's cells in the student's kernel, with nbclient.

Errors are allowed (a cell that raises is noted for the student and the next cell runs), each cell
has a time limit and the notebook a total one, and the outputs kept are capped (`_CellRunner`): a
notebook must not be able to make the grader hold gigabytes of prints. A cell that runs too long is
interrupted; if the kernel does not come back (or dies: sys.exit is harmless, os._exit, a segfault
or the memory watchdog are not), the kernel is restarted and the cells that had completed are
replayed, the offending cell skipped, within a restart budget (kernel_process.py).

Once the notebook has run, its output channel is closed: what the kernel prints during the suite's
calls would otherwise pile up, unread, in the grader's zmq queue.
"""
from __future__ import annotations

import math
import time

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionComplete, CellTimeoutError, DeadKernelError

from autograder.kernel_process import MAX_MESSAGE, KernelProcess, log, short


class _CellRunner(NotebookClient):
    """nbclient, with a cap on the outputs kept (shared by the runners of one notebook: `budget`).

    A runner whose cell timed out is not used again: nbclient leaves that cell's output poller
    running on the runner's client, so the session gives the next cells a new runner and client."""

    def __init__(self, nb, km, kc, *, budget: dict, **kw):
        super().__init__(nb, km=km, allow_errors=True, record_timing=False,
                         interrupt_on_timeout=False, raise_on_iopub_timeout=False, **kw)
        self.kc = kc                # set after __init__, which resets it
        self.outputs_complete = True
        self.budget = budget        # {"bytes": left for all outputs, "truncated": set of cell indices}

    def process_message(self, msg, cell, cell_index):
        try:
            return super().process_message(msg, cell, cell_index)
        except CellExecutionComplete:
            self.outputs_complete = True      # the kernel's "idle" arrived: no output was lost
            raise

    @property
    def output_budget(self) -> int:
        return self.budget["bytes"]

    @output_budget.setter
    def output_budget(self, value: int) -> None:
        self.budget["bytes"] = value

    def output(self, outs, msg, display_id, cell_index):
        size = _message_size(msg)
        if msg["msg_type"] == "stream" and size > self.output_budget > 0:
            keep = self.output_budget                      # the beginning of a long print is kept
            msg = {**msg, "content": {**msg["content"], "text": msg["content"]["text"][:keep]}}
            super().output(outs, msg, display_id, cell_index)
            size, self.output_budget = 1, 0
        if msg["msg_type"] != "error" and size > self.output_budget:
            if cell_index not in self.budget["truncated"]:
                self.budget["truncated"].add(cell_index)
                outs.append(nbformat.v4.new_output(
                    "stream", name="stderr",
                    text="[grader] output truncated: the notebook's outputs exceeded the size limit\n"))
            self.output_budget = 0
            return None
        self.output_budget -= size
        return super().output(outs, msg, display_id, cell_index)


def _message_size(msg) -> int:
    content = msg.get("content", {})
    if "text" in content:
        return len(content["text"])
    if "data" in content:
        return sum(len(str(v)) for v in content["data"].values())
    if "traceback" in content:
        return sum(len(line) for line in content["traceback"])
    return 0


class NotebookCells:
    """Runs one notebook's code cells in `process`'s kernel (see the module docstring).

    Inputs: process (the KernelProcess), timings (the session's figures: the notebook's seconds go
    to timings["notebook"]). `nb_restarts` counts the notebook's own restarts (limits.restarts).
    """

    def __init__(self, process: KernelProcess, timings: dict):
        self.process, self.limits, self.timings = process, process.limits, timings
        self.nb_restarts = 0

    async def run(self, nb, labels) -> list[str]:
        """Execute `nb` in place (outputs filled in); returns notes for the student."""
        p, lim, notes = self.process, self.limits, []
        if p.km is None:
            await p.start()
        t0 = time.monotonic()
        deadline = t0 + lim.total_timeout
        budget = {"bytes": lim.output_bytes, "truncated": set()}

        def new_runner():
            # iopub_timeout: how long a cell's last outputs may still arrive after its reply (decoding
            # a big print takes a while on a busy machine); the cell's own time limit is separate.
            return _CellRunner(nb, p.km, p.kc, budget=budget,
                               iopub_timeout=max(1, math.ceil(lim.output_grace)))
        runner = new_runner()
        count = 0
        code_cells = [i for i, c in enumerate(nb.cells) if c.cell_type == "code" and c.source.strip()]
        for pos, index in enumerate(code_cells):
            cell, label = nb.cells[index], labels[index]
            left = deadline - time.monotonic()
            if left < 1:
                notes.append(f"the notebook ran longer than {lim.total_timeout:g} s in total; {label} and the "
                             f"{len(code_cells) - pos - 1} code cells after it were not run")
                break
            runner.timeout = max(1, math.floor(min(lim.cell_timeout, left)))
            count += 1
            runner.outputs_complete = False
            try:
                await runner.async_execute_cell(cell, index, execution_count=count)
                if p.left_too_much_memory():
                    raise DeadKernelError("memory")
                if not runner.outputs_complete:
                    await self._reconnect_outputs(cell)
                    runner = new_runner()
                    notes.append(f"{label}: some of its outputs were too large and were dropped")
            except CellTimeoutError:
                limit = runner.timeout
                what = (f"ran longer than {limit:g} s" if limit >= lim.cell_timeout else
                        f"was still running when the notebook's total time ({lim.total_timeout:g} s) ran out")
                _add_grader_output(cell, f"this cell {what} and was stopped")
                if await p.interrupt():
                    notes.append(f"{label} {what} and was interrupted")
                    await p.replace_output_client()
                    runner = new_runner()
                    continue
                notes.append(f"{label} {what} and was stopped (the kernel was restarted and the cells "
                             f"before it were run again)")
                if not await self._restart_in_notebook(notes, deadline):
                    break
                runner = new_runner()
                continue
            except DeadKernelError:
                why = p.death_reason()
                _add_grader_output(cell, f"the kernel died while running this cell: {why}")
                notes.append(f"{label}: {why}; the kernel was restarted and the cells before it were run again")
                if not await self._restart_in_notebook(notes, deadline):
                    break
                runner = new_runner()
                continue
            p.replay.append((label, cell.source))
            error = next((o for o in cell.outputs if o.get("output_type") == "error"
                          and o.get("ename") != "GraderStop"), None)
            if error is not None:
                evalue = short(error.get("evalue", ""))
                notes.append(f"{label} raised {error.get('ename', 'an error')}" + (f": {evalue}" if evalue else ""))
        self.timings["notebook"] = round(time.monotonic() - t0, 3)
        # Close the output channel: what the kernel prints during the suite's calls would otherwise
        # pile up in this process's zmq queue, unread (a flood grew the grader to gigabytes).
        p.notebook_done = True
        if p.kc is not None:
            p.kc.stop_channels()
        notes += p.take_replay_notes()
        return notes

    async def _reconnect_outputs(self, cell) -> None:
        """The kernel's "idle" never came: a message over MAX_MESSAGE made zmq drop the output
        channel (it does not reconnect by itself). Connect a fresh one for the next cells."""
        log.warning("outputs of a cell were lost (a message over %d MB?); reconnecting", MAX_MESSAGE >> 20)
        _add_grader_output(cell, "some outputs of this cell were too large and were dropped")
        await self.process.replace_output_client()

    async def _restart_in_notebook(self, notes, deadline) -> bool:
        self.nb_restarts += 1
        if self.nb_restarts > self.limits.restarts:
            notes.append(f"the kernel was restarted {self.limits.restarts} times; the rest of the notebook "
                         f"was not run")
            await self.process.stop()
            return False
        ok = await self.process.restart_and_replay(deadline)
        if self.process.broken:
            notes.append(f"{self.process.broken}; the rest of the notebook was not run")
            return False
        if not ok:
            notes.append("after the restart, the earlier cells could not all be run again")
        return True


def _add_grader_output(cell, text: str) -> None:
    cell.setdefault("outputs", []).append(nbformat.v4.new_output(
        "error", ename="GraderStop", evalue=text, traceback=[f"[grader] {text}"]))
