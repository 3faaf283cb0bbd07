from loadtest.headless import main

main()
