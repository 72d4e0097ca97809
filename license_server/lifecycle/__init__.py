"""A license's lifecycle: the pure status function (``status``) and what offline observers feed it (``observer``),
the one writer of stored status (``transitions``), and the sweep (``jobs``). Each sits in its own layer."""
