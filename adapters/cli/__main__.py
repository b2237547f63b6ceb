from adapters.cli import console

console()
