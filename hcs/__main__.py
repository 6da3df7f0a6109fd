from hcs.cli import app

app()
