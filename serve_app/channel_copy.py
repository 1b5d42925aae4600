"""Copy shaped to a channel, around the pipeline: the plan's prompt and token budget, and a stream's fields as
far as written."""

from __future__ import annotations

from dataclasses import replace

from pydantic_core import from_json

from contracts.errors import InvalidRequestError, NotFoundError
from deployments.channels import catalogue
from deployments.router import CopyPlan


def with_channel(plan: CopyPlan, channel_id: str) -> CopyPlan:
    """The plan for copy shaped to a channel: its instructions in the prompt, its token budget."""
    channel = catalogue().get(channel_id)
    if channel is None:
        raise NotFoundError(f"no channel {channel_id!r}; channels: {', '.join(catalogue())}", "channel")
    if plan.language not in channel.languages:
        raise InvalidRequestError(f"channel {channel_id} takes copy in {', '.join(channel.languages)}, not "
                                  f"{plan.language}", "language")
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
