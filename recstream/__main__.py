from recstream.cli import main

main()
