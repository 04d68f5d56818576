"""The window's controllers: editing, training and files, each a QObject the window wires.

A controller gets the objects it works on in its constructor and talks back with Qt
signals; none imports :mod:`app.main_window`.
"""
