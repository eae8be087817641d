from p2pdata.cli import main

main()
