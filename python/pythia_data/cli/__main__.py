from pythia_data.cli import run

run()
