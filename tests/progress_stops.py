"""A progress callback that stops a tokenize run at a chosen call, as Ctrl-C or a failing
progress display would."""


def stop_on_call(n: int, error: BaseException | type[BaseException] = KeyboardInterrupt):
    calls = 0

    def progress(*_):
        nonlocal calls
        calls += 1
        if calls == n:
            raise error

    return progress
