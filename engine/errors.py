"""The one error type of the engine: its message says what is wrong and what to do."""


class EngineError(RuntimeError):
    pass
