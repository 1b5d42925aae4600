"""Copy shaped to a channel, around the pipeline: the plan's prompt and token budget, and a stream's fields as
far as written."""

from __future__ import annotations

from dataclasses import replace

from pydantic_core import from_json

from contracts.errors import InvalidRequestError, NotFoundError
from deployments.router import CopyPlan
from deployments.text.channels import catalogue

CHAT_TEMPLATE_TOKENS = 64  # role markers and the system turn a chat template adds around the messages


def with_channel(plan: CopyPlan, channel_id: str, context_tokens: int | None = None) -> CopyPlan:
    """The plan for copy shaped to a channel: its instructions in the prompt, its token budget; with the
    model's ``context_tokens``, fields shortened where a whole answer would not fit after the prompt."""
    channel = catalogue().get(channel_id)
    if channel is None:
        raise NotFoundError(f"no channel {channel_id!r}; channels: {', '.join(catalogue())}", "channel")
    if plan.language not in channel.languages:
        raise InvalidRequestError(f"channel {channel_id} takes copy in {', '.join(channel.languages)}, not "
                                  f"{plan.language}", "language")
    if context_tokens:
        # At most a token per prompt character (three for Chinese), the instructions at full length, and the
        # chat template's own tokens: an estimate that never falls short.
        prompt_chars = sum(len(m["content"]) for m in plan.messages) + len(channel.instructions(plan.language))
        budget = context_tokens - prompt_chars * (3 if plan.language == "zh" else 1) - CHAT_TEMPLATE_TOKENS
        channel = channel.within(plan.language, budget)
    *earlier, last = plan.messages
    prompt = {**last, "content": f"{last['content']}\n\n{channel.instructions(plan.language)}"}
    return replace(plan, messages=[*earlier, prompt], channel=channel,
                   max_tokens=channel.max_tokens(plan.language))


class FieldProgress:
    """A channel stream's fields as far as the engine has written them: the JSON so far, read with its
    last string left open (pydantic-core's partial mode), per answer; None while nothing new is readable."""

    def __init__(self):
        self.text: dict[int, str] = {}
        self.sent: dict[int, dict] = {}

    def add(self, index: int, text: str) -> dict | None:
        self.text[index] = self.text.get(index, "") + text
        try:
            fields = from_json(self.text[index], allow_partial="trailing-strings")
        except ValueError:
            return None
        if not isinstance(fields, dict) or fields == self.sent.get(index, {}):
            return None
        self.sent[index] = fields
        return fields
