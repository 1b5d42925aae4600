"""Polish deployment: language-aware clean-up and industry compliance rules, optionally after a
model rewrite. Returns the polished text with every edit (rule, before, after, where)."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import yaml
from jinja2.sandbox import SandboxedEnvironment

from contracts.config import PolishConfig
from contracts.errors import quiet_client_errors
from contracts.process import freeze_startup_heap
from deployments import model_calls
from deployments.generation import GenerationRequest, SamplingOptions
from deployments.text.draft import Draft
from deployments.text.polish_rules import RULES_FILE, Edit, load_compliance, polish_text

PROMPT_FILE = Path(__file__).parent / "text" / "rules" / "polish_prompt.yaml"


class Polish:
    """Rules always run; in ``llm`` mode a model rewrites the text first (recorded as one edit)."""

    def __init__(self, config: PolishConfig, models: dict | None = None):
        quiet_client_errors()
        self.config = config
        self.compliance = load_compliance(Path(config.rules_file) if config.rules_file else RULES_FILE)
        self.rewriter = (models or {}).get(config.llm_model) if config.mode == "llm" else None
        self._prompts = yaml.safe_load(PROMPT_FILE.read_text(encoding="utf-8"))
        self._env = SandboxedEnvironment()
        freeze_startup_heap()

    def rules_for(self, industry: str | None) -> list:
        return self.compliance.get("all", []) + self.compliance.get(industry or "", [])

    async def _rewrite(self, draft: Draft) -> tuple[str, str | None]:
        prompt = self._prompts[draft.language]
        messages = ({"role": "system", "content": prompt["system"]},
                    {"role": "user", "content": self._env.from_string(prompt["user"]).render(text=draft.text)})
        # Greedy (top_p then changes nothing): a rewrite should be the model's one best clean-up, not a variation.
        sampling = SamplingOptions(temperature=0, top_p=1.0, max_tokens=self.config.llm_max_tokens)
        request = GenerationRequest(request_id=f"polish-{uuid.uuid4().hex[:16]}", messages=messages, sampling=sampling)
        completion = await model_calls.generate(self.rewriter, request)
        text = completion.texts[0].strip()
        return (text, completion.finish_reasons[0]) if text else (draft.text, draft.finish_reason)

    async def process(self, draft: Draft) -> Draft:
        started = time.perf_counter()
        text, finish_reason, edits = draft.text, draft.finish_reason, []
        if self.rewriter is not None:
            rewritten, finish_reason = await self._rewrite(draft)  # the rewrite's own cut-off decides trimming
            if rewritten != text:
                edits.append(Edit("llm_rewrite", text, rewritten, 0))
                text = rewritten
        text, found = polish_text(text, draft.language, finish_reason, self.rules_for(draft.industry))
        draft.text = text
        draft.edits = [e.to_dict() for e in edits + found]
        draft.timings["polish_ms"] = round((time.perf_counter() - started) * 1000, 2)
        return draft
