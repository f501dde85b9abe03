"""Stage packages you can call: `tailorlm.train(...)` trains, while `tailorlm.train.config` stays a module.

The public API names its functions like the stages' packages (`tailorlm.ladder`, `tailorlm.train`,
`tailorlm.serve`), and a function cannot share a package's name: importing any submodule rebinds the
package attribute to the module. So each of those packages gives its module a `__call__` that runs
the API function of the same name. This module sits on the bottom floor: it imports `tailorlm.api` only
when a package is called, so the stage packages never import the floor above them at load.

>>> import tailorlm
>>> tailorlm.ladder("support")["recommendation"]["rung"]  # doctest: +SKIP
'sft'
"""

import sys
import types


class CallablePackage(types.ModuleType):
    def __call__(self, *args, **kwargs):
        import importlib

        return getattr(importlib.import_module("tailorlm.api"), self.__name__.rpartition(".")[2])(*args, **kwargs)


def callable_package(name: str) -> None:
    """Make the (already imported) package `name` callable as the `tailorlm.api` function of its last part."""
    sys.modules[name].__class__ = CallablePackage
