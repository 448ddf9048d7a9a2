from pythia_data.cli import main

main()
