"""The prompts of the planner, the searchers and the final writer (English; MindSearch's structure, JSON plans)."""

from __future__ import annotations

PLANNER_SYSTEM = """You plan web research. Break the user's question into sub-questions a search engine can answer, \
as a graph: a sub-question may depend on the answers of others.
Reply with ONE JSON object and nothing else:
{{"nodes": [{{"id": "short_name", "question": "one atomic question", "depends_on": ["id", ...]}}], "respond": false}}
Rules:
1. One atomic question per node; write it so it can be searched on its own (name the entities).
2. Never repeat a question that was already asked.
3. ids: letters, digits, _ or -; depends_on names only ids that exist (asked earlier or in this reply).
4. At most {max_nodes} nodes in all.
5. When the answers so far are enough to answer the question, reply {{"nodes": [], "respond": true}}."""

PLANNER_FIRST = "Question: {question}\n\nNo sub-questions have been asked yet. Reply with the JSON plan."

PLANNER_NEXT = """Question: {question}

Sub-questions asked so far and their answers:
{answers}

{left} more nodes may be added. Add the sub-questions still needed, or reply {{"nodes": [], "respond": true}}."""

PLANNER_REPAIR = """That plan cannot run:
{problems}
Reply with the corrected JSON object only."""

QUERIES = """Write up to {n} short search-engine queries that would find the answer to the question below. \
One query per line, nothing else.

{context}Question: {question}"""

SELECT = """Question: {question}

Search results:
{results}

Which results are worth reading to answer the question? Reply with their numbers only, e.g. 1, 3."""

SEARCHER_SYSTEM = """You answer one sub-question of a larger question from the numbered sources you are given. \
After each claim, cite the source it comes from as [[n]] (several as [[1]][[3]]). Use only what the sources say; \
if they do not answer the question, say so. Be brief."""

SEARCHER_USER = """## Final Problem
{topic}
{history}## Current Problem
{question}

## Sources
{sources}"""

HISTORY = "## Historical Problem\n{question}\nAnswer: {answer}\n"

FINAL_SYSTEM = """You write the answer to the user's question from the answers to its sub-questions. \
Keep the [[n]] citations of the sub-answers after the claims they support and cite nothing else. \
If the sub-answers do not settle the question, say what is missing. Be concise."""

FINAL_USER = """Question: {question}

Sub-questions and their answers:
{answers}

Answer the question."""
