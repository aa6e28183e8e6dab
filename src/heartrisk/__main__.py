from heartrisk.cli import main

main()
