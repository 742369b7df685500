"""B's questions about the briefing: the `Answerer` Protocol, the offline matcher, the LLM answerer and
the `answer_question` entry point (`briefing_qa.py`)."""
